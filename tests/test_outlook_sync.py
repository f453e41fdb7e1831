"""Outlook / Microsoft 365 (issue 9): the real engine, the production Graph adapter, the local Graph.

The fake Graph and Azure AD (``harness/graph_server.py``) run over real
HTTPS on loopback; msal and requests talk to them unchanged. After every
step the index equals the server: folder ids and paths, the message ids of
each folder, and their flags (``OutlookWorld.assert_index_matches_server``,
which also proves every message has one index row, ever).

1. A mailbox of a few thousand messages in nested folders, through
   bootstrap, backfill, new mail, flag changes, moves (same id, same row),
   deletes, and folders renamed, moved and deleted.
2. ``kill -9`` at seeded random points of a bootstrap and of an incremental
   pass: 0 lost, 0 doubled, each row announced new once.
3. An expired deltaLink (410, syncStateNotFound, resyncRequired): reconciled
   by id, only changed rows reach the hook.
4. Faults: 429 Retry-After, MailboxConcurrency, 503, a slow answer, a
   failing ``$batch`` step, Graph down for good (backoff), invalid_grant and
   interaction_required (reconnect needed, then a reconnect resumes).
5. A rotated refresh token is saved before it is used, and survives a
   kill -9 that follows the refresh at once.
6. Thin rows a delta left are filled by the sparse repair ($batch).
"""

import json
import os
import random
import signal
import subprocess
import sys
import time

import pytest

from maildesk_mail_client.application.ports import SyncSettings
from maildesk_mail_client.application.use_cases import repair_sparse
from maildesk_mail_client.repositories.lease_holders import parse_holder

from .harness.outlook_world import OutlookWorld, query
from .harness.worker import SlowHooks

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SEED = 20250612
HOOK_TABLE = "outlook_hook_log"
DELAY = 0.004  # the worker's hook sleeps this long per row, inside the transaction


# ---------------------------------------------------------------------------
# fixtures and helpers
# ---------------------------------------------------------------------------


def make_world(pg_db, graph, settings=None, who="test", **options):
    world = OutlookWorld(pg_db, graph, settings or SyncSettings(), refresh_token=graph.world.refresh_token,
                         **options)
    world.ctx.hooks = SlowHooks(0, world.conn.cursor(), HOOK_TABLE, who)
    return world


def seed(graph, rng, layout):
    """``layout``: {path: count}; folders made as needed (a well-known name first). Returns {path: id}."""
    world = graph.world
    ids = {"Inbox": world.well_known("inbox"), "Archive": world.well_known("archive"),
           "Sent Items": world.well_known("sentitems")}
    for path, count in layout.items():
        if path not in ids:
            parent, _, name = path.rpartition("/")
            ids[path] = world.add_folder(name, ids[parent] if parent else None)
        for number in range(count):
            world.add_message(ids[path], subject=f"{path} #{number}", sender=f"s{number % 7}@example.com",
                              is_read=rng.random() < 0.6, flagged=rng.random() < 0.1,
                              body=f"Body of {path} #{number}")
    return ids


LAYOUT = {"Inbox": 1300, "Inbox/Projects": 500, "Inbox/Projects/Alpha": 300, "Archive": 400,
          "Archive/2024": 250, "Sent Items": 150, "Inbox/Projects/Alpha/Deep": 100}


def newest(graph, folder_id, count):
    world = graph.world
    received = {m: world.message_json(m, ["receivedDateTime"])["receivedDateTime"]
                for m in world.message_ids(folder_id)}
    return set(sorted(received, key=lambda m: (received[m], m), reverse=True)[:count])


def account_state(world):
    return query(world, "SELECT auth_state, failure_count, last_error FROM mailbox_account WHERE id = %s",
                 [world.account_id])[0]


def hooked(hook_log, world, who, new=None):
    """[(remote id, is_new)] the hook was told by ``who`` (a LIKE pattern)."""
    rows = hook_log(f"""SELECT i.remote_id, h.is_new FROM {HOOK_TABLE} h JOIN maildesk_message_index i
                        ON i.id = h.index_id WHERE h.account_id = %s AND h.who LIKE %s""",
                    [world.account_id, who])
    return [(remote_id, is_new) for remote_id, is_new in rows if new is None or is_new == new]


def assert_each_row_announced_new_once(world, hook_log):
    rows = hook_log(f"""SELECT i.id, count(h.id) FILTER (WHERE h.is_new)
                          FROM maildesk_message_index i LEFT JOIN {HOOK_TABLE} h ON h.index_id = i.id
                         WHERE i.account_id = %s GROUP BY i.id""", [world.account_id])
    wrong = sorted((index_id, count) for index_id, count in rows if count != 1)
    assert not wrong, f"index rows announced as new other than once (id, times): {wrong[:10]}"


# ---------------------------------------------------------------------------
# 1. a few thousand messages in nested folders, through every kind of change
# ---------------------------------------------------------------------------


def test_a_nested_mailbox_stays_equal_to_the_server_through_every_change(pg_db, graph, hook_log):
    rng = random.Random(SEED)
    ids = seed(graph, rng, LAYOUT)
    world = make_world(pg_db, graph, SyncSettings(chunk=200, bootstrap_limit=1000))
    server = graph.world

    # Bootstrap: the first run shows INBOX's newest 50 and ends; later runs fill up to the bound.
    report = world.bootstrap_once()
    assert report.new == 50 and set(world.index()) == newest(graph, ids["Inbox"], 50)
    world.bootstrap_all()
    indexed = world.index()
    for path, folder_id in ids.items():
        expected = newest(graph, folder_id, 1000)
        assert {m for m, row in indexed.items() if row[0] == folder_id} == expected, path
    assert world.folders()[ids["Inbox"]].backfill_state == "pending"

    world.backfill_all()
    assert world.assert_index_matches_server() == sum(LAYOUT.values())
    world.sync()
    assert world.assert_index_matches_server() == sum(LAYOUT.values())
    assert server.peak_concurrency <= 4 and server.throttled == 0
    assert server.immutable_id["without"] == 0 and server.immutable_id["step_without"] == 0

    def step(change):
        before = world.row_ids()
        mark = hook_log(f"SELECT coalesce(max(id), 0) FROM {HOOK_TABLE}")[0][0]
        change()
        world.sync()
        world.assert_index_matches_server()
        told = hook_log(f"""SELECT i.remote_id, h.is_new FROM {HOOK_TABLE} h JOIN maildesk_message_index i
                            ON i.id = h.index_id WHERE h.id > %s""", [mark])
        return before, told

    # New mail, in several folders.
    new = []
    _, told = step(lambda: new.extend(server.add_message(ids[path], subject="new") for path in
                                      ("Inbox", "Inbox/Projects/Alpha", "Archive/2024") for _ in range(10)))
    assert sorted(told) == sorted((m, True) for m in new)

    # Read and flag changes: only those rows reach the hook.
    changed = rng.sample(sorted(server.message_ids(ids["Inbox"])), 40)

    def flip():
        for number, msg_id in enumerate(changed):
            state = server.message_json(msg_id, ["isRead", "flag"])
            if number % 2:
                server.update(msg_id, is_read=not state["isRead"])
            else:
                server.update(msg_id, flagged=state["flag"]["flagStatus"] != "flagged")
    _, told = step(flip)
    assert sorted(told) == sorted((m, False) for m in changed)

    # Moves both ways between folders synced in either order: the same row, never a loss and a new one.
    moved = rng.sample(sorted(server.message_ids(ids["Inbox"])), 15) + \
        rng.sample(sorted(server.message_ids(ids["Inbox/Projects/Alpha"])), 10)
    targets = {m: ids["Archive"] if n < 15 else ids["Inbox"] for n, m in enumerate(moved)}
    before, told = step(lambda: [server.move(m, target) for m, target in targets.items()])
    assert world.row_ids() == before, "a move kept every row id and added no row"
    assert {m for m, is_new in told if is_new} == set()
    assert {m for m, _new in told} == set(moved)

    # Deletes.
    deleted = rng.sample(sorted(server.message_ids(ids["Archive"])), 12)
    before, _told = step(lambda: [server.delete(m) for m in deleted])
    assert set(world.row_ids()) == set(before)

    # A folder renamed, one moved under another parent, one deleted (with its messages).
    rows_before = world.row_ids()
    alpha_messages = server.message_ids(ids["Inbox/Projects/Alpha"])

    def folders():
        server.rename_folder(ids["Inbox/Projects"], "Projects 2025")
        server.move_folder(ids["Inbox/Projects/Alpha"], ids["Archive"])
        server.delete_folder(ids["Archive/2024"])
    step(folders)
    paths = {remote_id: f.path for remote_id, f in world.folders().items()}
    assert paths[ids["Inbox/Projects"]] == "Inbox/Projects 2025"
    assert paths[ids["Inbox/Projects/Alpha"]] == "Archive/Alpha"
    assert paths[ids["Inbox/Projects/Alpha/Deep"]] == "Archive/Alpha/Deep"
    assert ids["Archive/2024"] not in paths
    assert all(world.row_ids()[m] == rows_before[m] for m in alpha_messages), "a moved folder keeps its rows"
    assert_each_row_announced_new_once(world, hook_log)
    assert account_state(world) == ("ok", 0, None)


def test_a_message_moved_back_and_forth_between_passes_keeps_one_row(pg_db, graph):
    rng = random.Random(SEED + 1)
    ids = seed(graph, rng, {"Inbox": 30, "Archive": 30})
    world = make_world(pg_db, graph)
    world.full_sync()
    server = graph.world
    msg_id = sorted(server.message_ids(ids["Inbox"]))[0]
    row = world.row_ids()[msg_id]
    for target in ("Archive", "Inbox", "Archive"):
        server.move(msg_id, ids[target])
        world.sync()
        world.assert_index_matches_server()
        assert world.row_ids()[msg_id] == row
    # Out and back within one pass: the delta of each folder says where it is now.
    server.move(msg_id, ids["Inbox"])
    server.move(msg_id, ids["Archive"])
    server.move(msg_id, ids["Inbox"])
    world.sync()
    world.assert_index_matches_server()
    assert world.row_ids()[msg_id] == row


def test_a_no_change_pass_is_one_delta_request_per_folder(pg_db, graph):
    seed(graph, random.Random(SEED), {"Inbox": 40, "Inbox/Sub": 20})
    world = make_world(pg_db, graph)
    world.full_sync()
    graph.world.requests.clear()
    world.sync()
    selectable = len(world.folders())
    requests = graph.world.requests
    assert requests["GET /me/mailFolders/{id}/messages/delta"] == selectable
    assert requests["GET /me/messages/{id}"] == 0 and requests["GET /me/mailFolders/{id}/messages"] == 0


# ---------------------------------------------------------------------------
# 2. kill -9 at random points
# ---------------------------------------------------------------------------

KILL_SETTINGS = {"first_chunk": 20, "chunk": 40, "bootstrap_limit": 200, "lease_ttl": 300}


def spawn(pg_db, world, mode, stderr, settings=KILL_SETTINGS):
    spec = {"pg": pg_db.server, "dbname": pg_db.dbname, "account_id": world.account_id, "graph": world.graph,
            "settings": settings, "delay": DELAY, "hook_table": HOOK_TABLE, "mode": mode,
            "options": world.options}
    return subprocess.Popen([sys.executable, "-m", "tests.harness.outlook_world", json.dumps(spec)], cwd=REPO,
                            env={**os.environ, "PYTHONPATH": REPO}, stdout=subprocess.PIPE, stderr=stderr, text=True)


def lease_pid(world):
    rows = query(world, "SELECT holder FROM maildesk_account_lease WHERE account_id = %s AND purpose = 'sync'",
                 [world.account_id])
    parsed = parse_holder(rows[0][0]) if rows else None
    return parsed[1] if parsed else None


def kill_at(world, worker, progress, threshold, extra, errors, timeout=60):
    """SIGKILL ``extra`` seconds after ``progress()`` reached ``threshold``, once the worker has signed in.

    Not between Azure AD's answer and the commit of the rotated token it
    carries (milliseconds): a kill there loses the token, as the fake kills
    the old one at once. That window is the refresh test's subject.
    """
    deadline = time.monotonic() + timeout
    saves = world.stored_token()[1]
    while True:
        assert worker.poll() is None, f"the worker ended before its kill point:\n{errors.read_text()[-3000:]}"
        assert time.monotonic() < deadline, "the worker never reached its kill point"
        signed_in = world.stored_token()[1] > saves
        if signed_in and (lease_pid(world) == worker.pid or progress() > 0) and progress() >= threshold:
            break
        time.sleep(0.005)
    time.sleep(extra)
    assert worker.poll() is None, f"the worker finished before its kill point\n{errors.read_text()[-3000:]}"
    worker.send_signal(signal.SIGKILL)
    worker.wait()


def backends(world):
    return {pid for (pid,) in query(world, "SELECT pid FROM pg_stat_activity WHERE datname = current_database() "
                                           "AND pid <> pg_backend_pid()")}


def wait_backends_gone(world, baseline, timeout=10):
    deadline = time.monotonic() + timeout
    while backends(world) - baseline:
        assert time.monotonic() < deadline, "the killed worker's database sessions outlived it"
        time.sleep(0.01)


@pytest.mark.parametrize("point", range(3))
def test_kill_9_at_a_random_point_of_a_bootstrap(point, pg_db, graph, hook_log, tmp_path):
    rng = random.Random(f"{SEED}:bootstrap:{point}")
    seed(graph, rng, {"Inbox": 300, "Inbox/Sub": 120, "Archive": 80})
    world = make_world(pg_db, graph, SyncSettings(**KILL_SETTINGS), who="survivor")
    low, high = [(0, 1), (20, 250), (300, 420)][point]
    threshold = rng.randrange(low, high)
    extra = rng.uniform(0, 0.1)
    count = lambda: query(world, "SELECT count(*) FROM maildesk_message_index WHERE account_id = %s",  # noqa: E731
                          [world.account_id])[0][0]
    baseline = backends(world)
    errors = tmp_path / "worker.err"
    with open(errors, "w") as stderr:
        worker = spawn(pg_db, world, "bootstrap", stderr)
        kill_at(world, worker, count, threshold, extra, errors)
    wait_backends_gone(world, baseline)

    committed = set(world.row_ids())
    assert {m for m, _ in hooked(hook_log, world, "worker-%", new=True)} == committed, \
        "the dead worker's log is its committed rows"
    world.full_sync()
    assert world.assert_index_matches_server() == 500
    survivor = {m for m, _ in hooked(hook_log, world, "survivor", new=True)}
    assert not survivor & committed
    assert_each_row_announced_new_once(world, hook_log)
    assert account_state(world)[:2] == ("ok", 0)


@pytest.mark.parametrize("point", range(2))
def test_kill_9_at_a_random_point_of_an_incremental_pass(point, pg_db, graph, hook_log, tmp_path):
    """A backlog (new mail, flags, moves, deletes) over several delta pages, killed mid-round."""
    rng = random.Random(f"{SEED}:incremental:{point}")
    ids = seed(graph, rng, {"Inbox": 150, "Archive": 60})
    settings = {**KILL_SETTINGS, "chunk": 20}
    world = make_world(pg_db, graph, SyncSettings(**settings), who="setup")
    world.full_sync()
    server = graph.world
    inbox = sorted(server.message_ids(ids["Inbox"]))
    for msg_id in inbox[:30]:
        server.update(msg_id, is_read=True, flagged=True)
    for msg_id in inbox[30:45]:
        server.move(msg_id, ids["Archive"])
    for msg_id in inbox[45:55]:
        server.delete(msg_id)
    new = {server.add_message(ids[rng.choice(["Inbox", "Archive"])], subject="backlog") for _ in range(160)}
    before = world.row_ids()

    threshold = rng.randrange(*[(1, 40), (60, 150)][point])
    extra = rng.uniform(0, 0.05)
    count = lambda: len(set(world.row_ids()) - set(before))  # noqa: E731
    baseline = backends(world)
    errors = tmp_path / "worker.err"
    with open(errors, "w") as stderr:
        worker = spawn(pg_db, world, "sync", stderr, settings)
        kill_at(world, worker, count, threshold, extra, errors)
    wait_backends_gone(world, baseline)

    committed_new = set(world.row_ids()) - set(before)
    assert committed_new <= new
    assert {m for m, _ in hooked(hook_log, world, "worker-%", new=True)} == committed_new
    world.ctx.hooks.who = "survivor"
    world.sync()
    assert world.assert_index_matches_server() == 150 + 60 - 10 + 160
    assert {m: r for m, r in world.row_ids().items() if m in before} == before, "moves kept their rows"
    survivor = {m for m, _ in hooked(hook_log, world, "survivor", new=True)}
    assert not survivor & committed_new and survivor | committed_new == new
    assert_each_row_announced_new_once(world, hook_log)
    assert account_state(world)[:2] == ("ok", 0)


# ---------------------------------------------------------------------------
# 3. an expired deltaLink
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["410", "syncStateNotFound", "resyncRequired"])
def test_an_expired_delta_link_is_reconciled_by_id(kind, pg_db, graph, hook_log):
    rng = random.Random(SEED)
    ids = seed(graph, rng, {"Inbox": 400, "Archive": 50})
    world = make_world(pg_db, graph, SyncSettings(chunk=100))
    world.full_sync()
    server = graph.world
    inbox = sorted(server.message_ids(ids["Inbox"]))
    mark = hook_log(f"SELECT coalesce(max(id), 0) FROM {HOOK_TABLE}")[0][0]
    before = world.index()
    # Changes made before the cursor expires are lost with it: only the reconciliation can find them.
    server.update(inbox[0], is_read=True, flagged=True)
    server.update(inbox[1], is_read=False, flagged=False)
    server.delete(inbox[2])
    server.move(inbox[3], ids["Archive"])
    new = server.add_message(ids["Inbox"], subject="while expired")
    server.expire_delta(ids["Inbox"], kind)
    rows = world.row_ids()

    world.sync()
    world.assert_index_matches_server()
    assert world.row_ids()[inbox[3]] == rows[inbox[3]]
    after = world.index()
    flipped = {m for m in inbox[:2] if after[m] != before[m]}
    told = hook_log(f"""SELECT i.remote_id, h.is_new FROM {HOOK_TABLE} h JOIN maildesk_message_index i
                        ON i.id = h.index_id WHERE h.id > %s""", [mark])
    assert sorted(told) == sorted({(new, True), (inbox[3], False)} | {(m, False) for m in flipped}), \
        "only changed rows reach the hook"
    assert account_state(world) == ("ok", 0, None)
    # The new deltaLink works: the next change comes through the feed.
    server.update(inbox[5], flagged=True)
    world.sync()
    world.assert_index_matches_server()


# ---------------------------------------------------------------------------
# 4. faults
# ---------------------------------------------------------------------------

FAULTS = {
    "429 Retry-After": lambda w, ids: w.fail_next(r"/messages/delta", 429, retry_after=1, count=2),
    "MailboxConcurrency": lambda w, ids: w.fail_next(r"/messages", 429, code="ApplicationThrottled",
                                                     retry_after=1, count=3),
    "503": lambda w, ids: w.fail_next(r"/messages", 503, count=3),
    "slow answer": lambda w, ids: w.slow_next(r"/messages/delta", 2.5, count=1),
    "$batch 503": lambda w, ids: w.fail_next(r"^/\$batch", 503, count=2),
}


@pytest.mark.parametrize("fault", list(FAULTS))
def test_a_fault_is_survived_with_nothing_lost(fault, pg_db, graph):
    rng = random.Random(SEED)
    ids = seed(graph, rng, {"Inbox": 120, "Inbox/Sub": 40})
    world = make_world(pg_db, graph, SyncSettings(chunk=50), timeout=1.5)
    server = graph.world
    FAULTS[fault](server, ids)
    world.full_sync()
    world.assert_index_matches_server()
    for _ in range(5):
        server.add_message(ids["Inbox"], subject="after")
    server.update(sorted(server.message_ids(ids["Inbox/Sub"]))[0], is_read=True)
    FAULTS[fault](server, ids)
    world.sync()
    assert world.assert_index_matches_server() == 165
    assert account_state(world) == ("ok", 0, None)
    # A request the client gave up on (the slow answer) still runs on the server for a while; the
    # adapter keeps its slot that long, but the next run's adapter cannot know of it.
    assert server.peak_concurrency <= 4 + (fault == "slow answer")


def test_mailbox_concurrency_from_the_server_is_waited_out(pg_db, graph):
    """The server allows 1 request at a time: the adapter's parallel listing meets real 429s and retries."""
    rng = random.Random(SEED)
    seed(graph, rng, {"Inbox": 60, "Inbox/A": 10, "Inbox/B": 10, "Archive/C": 10, "Archive/D": 10})
    graph.world.max_concurrency = 1
    graph.world.latency = 0.05
    world = make_world(pg_db, graph)
    world.full_sync()
    assert graph.world.throttled > 0, "the test met no MailboxConcurrency answer"
    world.assert_index_matches_server()
    assert account_state(world) == ("ok", 0, None)


def test_a_batch_step_that_fails_is_retried_alone(pg_db, graph):
    from maildesk_mail_client.providers.outlook import OutlookMailbox

    rng = random.Random(SEED)
    ids = seed(graph, rng, {"Inbox": 45})
    world = make_world(pg_db, graph)
    mailbox = OutlookMailbox(world.config())
    folder_state = type("F", (), {"path": "Inbox", "remote_id": ids["Inbox"]})()
    wanted = sorted(graph.world.message_ids(ids["Inbox"]))
    graph.world.fail_next(wanted[7], 503, count=2)
    graph.world.fail_next(wanted[30], 429, retry_after=0, count=1)
    graph.world.requests.clear()
    try:
        found = mailbox.fetch(folder_state, wanted)
    finally:
        mailbox.close()
    assert [m.remote_id for m in found] == wanted
    # 45 steps once, then the two failing steps alone (twice for the one failing twice).
    assert graph.world.requests["GET /me/messages/{id}"] == 45 + 2 + 1
    assert mailbox.graph.counts["batch steps retried"] == 3


def test_graph_down_for_good_backs_the_account_off_then_it_recovers(pg_db, graph):
    ids = seed(graph, random.Random(SEED), {"Inbox": 30})
    world = make_world(pg_db, graph, max_tries=3)
    world.full_sync()
    graph.world.fail_next(r"/messages/delta", 503, count=3)  # every try of one request
    graph.world.add_message(ids["Inbox"], subject="waiting")
    world.sync()
    state, failures, error = account_state(world)
    assert (state, failures) == ("ok", 1) and "Microsoft Graph" in error and "retry" in error
    query(world, "UPDATE mailbox_account SET backoff_until = NULL WHERE id = %s", [world.account_id])
    world.sync()
    assert world.assert_index_matches_server() == 31


@pytest.mark.parametrize("error", ["invalid_grant", "interaction_required"])
def test_a_refused_sign_in_asks_for_a_reconnect_and_a_reconnect_resumes(error, pg_db, graph):
    ids = seed(graph, random.Random(SEED), {"Inbox": 30})
    world = make_world(pg_db, graph)
    world.full_sync()
    graph.world.revoke_refresh_token(error)
    graph.world.add_message(ids["Inbox"], subject="after the revocation")
    world.sync()
    state, _failures, message = account_state(world)
    assert state == "reconnect_needed"
    assert error in message and "reconnect the account" in message and "Connect Outlook" in message
    assert world.stored_token()[0] not in message

    # The admin reconnects: a new authorization code becomes a new refresh token; the account is saved.
    code = graph.world.new_authorization_code()
    status, answer = graph.world.grant({"grant_type": "authorization_code", "code": code,
                                        "client_id": graph.world.client_id,
                                        "client_secret": graph.world.client_secret})
    assert status == 200
    world.save_token(answer["refresh_token"])
    query(world, "UPDATE mailbox_account SET auth_state = 'ok', write_date = now() AT TIME ZONE 'UTC', "
                 "backoff_until = NULL WHERE id = %s", [world.account_id])
    world.sync()
    assert world.assert_index_matches_server() == 31
    assert account_state(world)[0] == "ok"


def test_an_access_token_refused_mid_run_is_renewed_once(pg_db, graph):
    ids = seed(graph, random.Random(SEED), {"Inbox": 30})
    world = make_world(pg_db, graph)
    world.full_sync()
    mailbox = world.open_mailbox(world.account_id)
    try:
        mailbox.list_folders()
        graph.world.expire_access_tokens()
        graph.world.add_message(ids["Inbox"], subject="x")
        assert len(mailbox.list_folders()) == len(world.folders())
        assert mailbox.graph.tokens.refreshes == 2
    finally:
        mailbox.close()


def test_an_access_token_kept_from_the_last_run_spares_azure_ad(pg_db, graph):
    seed(graph, random.Random(SEED), {"Inbox": 10})
    world = make_world(pg_db, graph, keep_access_token=True)
    world.full_sync()
    token_calls = graph.world.requests["POST /{tenant}/oauth2/v2.0/token"]
    assert token_calls == 1 and world.kept_access[0]
    world.sync()
    world.sync()
    assert graph.world.requests["POST /{tenant}/oauth2/v2.0/token"] == 1, "later runs used the kept token"
    graph.world.expire_access_tokens()  # revoked early: Graph's 401 gets a new one, once
    world.sync()
    assert graph.world.requests["POST /{tenant}/oauth2/v2.0/token"] == 2
    assert account_state(world) == ("ok", 0, None)


# ---------------------------------------------------------------------------
# 5. refresh-token rotation across a crash
# ---------------------------------------------------------------------------


def test_a_rotated_refresh_token_is_saved_before_it_is_used(pg_db, graph):
    world = make_world(pg_db, graph)
    seen = []
    save = world.save_token

    def watching(token):
        seen.append((token == graph.world.refresh_token, sum(graph.world.requests[k] for k in graph.world.requests
                                                              if k.startswith(("GET /me", "POST /$batch")))))
        save(token)
    world.save_token = watching
    world.sync()
    assert seen == [(True, 0)], "saved at once, before any Graph request used the new access token"


def test_a_rotated_refresh_token_survives_a_kill_9_right_after_the_refresh(pg_db, graph, tmp_path):
    ids = seed(graph, random.Random(SEED), {"Inbox": 25})
    world = make_world(pg_db, graph)
    world.full_sync()
    old_token, saves = world.stored_token()
    errors = tmp_path / "worker.err"
    with open(errors, "w") as stderr:
        worker = spawn(pg_db, world, "refresh", stderr)
        line = worker.stdout.readline()
        assert line.strip() == "refreshed", errors.read_text()[-3000:]
        worker.send_signal(signal.SIGKILL)
        worker.wait()
    token, saved = world.stored_token()
    assert saved == saves + 1 and token == graph.world.refresh_token and token != old_token
    status, answer = graph.world.grant({"grant_type": "refresh_token", "refresh_token": old_token,
                                        "client_id": graph.world.client_id,
                                        "client_secret": graph.world.client_secret})
    assert (status, answer["error"]) == (400, "invalid_grant"), "the old token is dead"
    graph.world.add_message(ids["Inbox"], subject="after the crash")
    world.sync()
    assert world.assert_index_matches_server() == 26
    assert account_state(world) == ("ok", 0, None)


# ---------------------------------------------------------------------------
# 6. thin rows from a delta, filled by the sparse repair
# ---------------------------------------------------------------------------


def test_rows_a_delta_left_thin_are_filled_by_the_sparse_repair(pg_db, graph):
    ids = seed(graph, random.Random(SEED), {"Inbox": 20})
    world = make_world(pg_db, graph)
    world.full_sync()
    server = graph.world
    # A deltaLink taken with fewer fields (as Graph's delta may describe a change): its answers are thin.
    session = graph.session()
    answer = session.get(f"{graph.url}/me/mailFolders/{ids['Inbox']}/messages/delta",
                         params={"$select": "id,isRead,flag", "$deltatoken": "latest"},
                         headers={"Authorization": "Bearer " + server.issue_access_token(),
                                  "Prefer": 'IdType="ImmutableId"'}).json()
    query(world, "UPDATE maildesk_folder SET sync_cursor = %s WHERE remote_id = %s",
          [answer["@odata.deltaLink"], ids["Inbox"]])
    new = [server.add_message(ids["Inbox"], subject=f"thin {n}", is_read=n % 2 == 0) for n in range(25)]
    old = sorted(server.message_ids(ids["Inbox"]) - set(new))[0]
    server.update(old, flagged=True)
    for msg_id in new:  # the sync pass's own repair attempt is refused, so the rows stay thin
        server.fail_next(msg_id, 404)
    world.sync()
    world.assert_index_matches_server()
    thin = query(world, """SELECT remote_id FROM maildesk_message_index WHERE account_id = %s AND needs_refetch
                           AND subject IS NULL""", [world.account_id])
    assert {m for (m,) in thin} == set(new)
    assert query(world, "SELECT subject FROM maildesk_message_index WHERE remote_id = %s", [old])[0][0], \
        "an indexed row is not made thin by a thin delta"

    report = repair_sparse(world.ctx, world.account_id, world.deadline())
    assert report is not None
    rows = dict(query(world, "SELECT remote_id, subject FROM maildesk_message_index WHERE remote_id = ANY(%s)",
                      [new]))
    assert rows == {m: f"thin {n}" for n, m in enumerate(new)}
    assert not query(world, "SELECT 1 FROM maildesk_message_index WHERE account_id = %s AND needs_refetch",
                     [world.account_id])
    world.assert_index_matches_server()
