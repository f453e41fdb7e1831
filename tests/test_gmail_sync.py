"""Gmail (issue 8): the production adapter on the local fake Gmail, driven by the real engine.

Real HTTP on loopback (``harness/gmail_server.py``), the real
google-api-python-client, real PostgreSQL. After every scenario the index
equals the fake's state, worked out from each message's labels
(``harness/gmail_engine.py``): a row per label folder and in All Mail,
UNREAD / STARRED / DRAFT as the flags of every row of the message.
"""

import json
import os
import random
import signal
import subprocess
import sys
import time

import pytest

from maildesk_mail_client.application.domain import FolderState
from maildesk_mail_client.application.ports import SyncSettings
from maildesk_mail_client.providers.gmail import GmailMailbox
from maildesk_mail_client.providers.gmail.quota import WINDOW, QuotaPacer

from .harness.gmail_engine import GmailSync, SlowHooks, TokenSource, expected_index, gmail_config, raw_message, seed
from .harness.gmail_server import GmailServer

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SEED = 20250812
HOOK_TABLE = "gmail_hook_log"


def newest(world, key, count):
    """The ``count`` newest message ids of a folder, as Gmail lists them."""
    ids, token = [], None
    while len(ids) < count:
        page = world.list_messages([] if key == "ALL" else [key], include_spam_trash=key in ("SPAM", "TRASH"),
                                   max_results=500, page_token=token)
        ids += [item["id"] for item in page.get("messages") or ()]
        token = page.get("nextPageToken")
        if not token:
            break
    return ids[:count]


def hooked(sync):
    """{index row id: times announced as new} and the set of rows announced at all."""
    calls = sync.ctx.hooks.calls
    return [call[3] for call in calls if call[4]], {call[3] for call in calls}


def row_ids(sync):
    """{(folder remote id, message id): index row id} of the live rows."""
    rows = sync.query("""SELECT f.remote_id, i.remote_id, i.id FROM maildesk_message_index i
                          JOIN maildesk_folder f ON f.id = i.folder_id
                         WHERE i.account_id = %s AND NOT i.deleted_on_server""", [sync.account_id])
    return {(folder, remote_id): row_id for folder, remote_id, row_id in rows}


def changed_rows(sync, before, action):
    """Run ``action``, a sync; returns (rows whose state changed or appeared, rows the hook was told of)."""
    ids_before = row_ids(sync)
    sync.ctx.hooks.calls.clear()
    action()
    after = sync.index()
    ids_after = row_ids(sync)
    expected = {ids_after[key] for key, flags in after.items() if before.get(key) != flags}
    for key in set(before) & set(after):
        assert ids_before[key] == ids_after[key], f"{key} was indexed again under another row"
    return expected, {call[3] for call in sync.ctx.hooks.calls}


# ---------------------------------------------------------------------------
# a mailbox of a few thousand messages over ten labels
# ---------------------------------------------------------------------------


def test_a_mailbox_over_ten_labels_equals_gmail_through_every_kind_of_change(pg_db, gmail):
    world = gmail.world
    rng = random.Random(SEED)
    labels = [world.add_label(name) for name in ("Work", "Work/Clients", "Work/Invoices", "Family", "Travel",
                                                 "Receipts", "News", "Projects/Alpha", "Projects/Beta", "Later")]
    ids = seed(world, 3000, labels, rng=rng)
    settings = SyncSettings(bootstrap_limit=1200, folder_listing_interval=0)
    sync = GmailSync.on(pg_db, gmail, settings)

    sync.bootstrap_all()
    # Bootstrap: the newest of each label, up to the bound, exactly as on the server.
    folders = sync.folders()
    done = {key for key, folder in folders.items() if folder.backfill_state == "done"}
    assert "ALL" not in done and "Label_1" in done, "All Mail is above the bound, a label below"
    sync.assert_matches(world, folders=done)
    index, expected = sync.index(), expected_index(world)
    assert all(expected.get(key) == flags for key, flags in index.items()), "a walked row is not the server's"
    for key in set(folders) - done:
        # Its own walk's 1,200 newest, and what the other labels' walks placed in it (All Mail above all).
        walked = set(newest(world, key, 1200))
        held = {message_id for folder, message_id in index if folder == key}
        assert len(walked) == 1200 and walked <= held, f"{key}: the bound is 1,200 newest"
    placed_in_all = {message_id for folder, message_id in index if folder != "ALL"} - {
        message_id for folder, message_id in index if folder == "ALL"}
    assert all(expected.get(("ALL", message_id)) is None for message_id in placed_in_all), \
        "a message a label's walk indexed is not in All Mail"
    assert sync.history_id() is not None

    sync.backfill_all()
    total = sync.assert_matches(world)
    assert total > 8000
    new_announced, _rows = hooked(sync)
    assert len(new_announced) == len(set(new_announced)) == total, "each row announced as new once"

    def step(action, expect_hooks=True):
        before = sync.index()
        action()
        expected_rows, hooked_rows = changed_rows(sync, before, sync.sync)
        sync.assert_matches(world)
        assert hooked_rows == expected_rows, "the hook hears of exactly the rows that changed"
        if expect_hooks:
            assert expected_rows
        assert sync.account_state()[:2] == ("ok", 0)

    # New mail, some with labels, one in spam.
    step(lambda: ids.extend(seed(world, 40, labels, rng=rng, start=5000, base_ms=1_800_000_000_000)))
    # Labels added and removed (a message moved between labels, archived, back to the inbox).
    old = rng.sample(ids[:3000], 120)

    def relabel():
        for n, message_id in enumerate(old[:60]):
            world.modify(message_id, add=(labels[n % 10],), remove=(labels[(n + 3) % 10], "INBOX"))
        for message_id in old[60:90]:
            world.modify(message_id, add=("INBOX",))
    step(relabel)

    # Read and starred, on messages that are in several folders.
    def flags():
        for message_id in old[:40]:
            world.modify(message_id, remove=("UNREAD",))
        for message_id in old[40:60]:
            world.modify(message_id, add=("UNREAD",))
        for message_id in old[60:80]:
            world.modify(message_id, add=("STARRED",))
        for message_id in old[80:90]:
            world.modify(message_id, remove=("STARRED",))
        for message_id in old[90:95]:  # read, then unread again: no change in the end
            world.modify(message_id, remove=("UNREAD",))
            world.modify(message_id, add=("UNREAD",))
    step(flags)

    # Deleted for good, and trashed.
    def delete_and_trash():
        for message_id in old[95:110]:
            world.delete(message_id)
        for message_id in old[110:120]:
            world.trash(message_id)
    step(delete_and_trash)

    # A label renamed: same folder, same rows, new path; nothing announced.
    work = sync.folders()[labels[0]]
    rows_before = {key: value for key, value in row_ids(sync).items() if key[0] == labels[0]}
    step(lambda: world.rename_label(labels[0], "Job"), expect_hooks=False)
    renamed = sync.folders()[labels[0]]
    assert (renamed.id, renamed.path) == (work.id, "Job")
    assert {key: value for key, value in row_ids(sync).items() if key[0] == labels[0]} == rows_before

    # A label deleted: its folder and its rows go; the messages stay everywhere else.
    doomed = labels[9]
    members = world.message_ids(doomed)
    assert members
    step(lambda: world.delete_label(doomed), expect_hooks=False)
    assert doomed not in sync.folders()
    assert all(("ALL", message_id) in sync.index() for message_id in members
               if not world.labels_of(message_id) & {"SPAM", "TRASH"})


def test_a_new_label_met_in_the_feed_becomes_a_folder_at_once(pg_db, gmail):
    """A label created and used between two listings: the feed's step names it, the engine lists again."""
    world = gmail.world
    seed(world, 30)
    sync = GmailSync.on(pg_db, gmail, SyncSettings(folder_listing_interval=3600))
    sync.full_sync()
    fresh = world.add_label("Fresh")
    message_id = world.add_message(raw_message(900), ("INBOX", fresh))
    sync.sync()
    assert fresh in sync.folders()
    sync.backfill_all()
    sync.bootstrap_all()
    sync.sync()
    assert sync.index()[(fresh, message_id)] == (True, False, False, False)  # read: no UNREAD
    sync.assert_matches(world)


def test_a_no_change_pass_is_one_history_call(pg_db, gmail):
    world = gmail.world
    seed(world, 50)
    sync = GmailSync.on(pg_db, gmail, SyncSettings(folder_listing_interval=3600))
    sync.full_sync()
    world.calls.clear()
    report = sync.sync()
    assert not report.changed
    assert world.calls["gmail.users.history.list"] == 1
    assert world.calls["gmail.users.messages.get"] == world.calls["gmail.users.messages.list"] == 0


# ---------------------------------------------------------------------------
# expired history
# ---------------------------------------------------------------------------


def test_an_expired_history_id_resyncs_by_id_without_loss_doubles_or_hooks_for_unchanged(pg_db, gmail):
    world = gmail.world
    rng = random.Random(SEED + 1)
    labels = [world.add_label(f"L{n}") for n in range(4)]
    ids = seed(world, 600, labels, rng=rng)
    sync = GmailSync.on(pg_db, gmail, SyncSettings(chunk=100))
    sync.full_sync()
    sync.assert_matches(world)
    cursor = sync.history_id()

    def changes_while_away():
        seed(world, 30, labels, rng=rng, start=2000, base_ms=1_800_000_000_000)
        for message_id in ids[:20]:
            world.modify(message_id, remove=("UNREAD",), add=("STARRED",))
        for message_id in ids[20:30]:
            world.modify(message_id, add=(labels[0],), remove=(labels[1],))
        for message_id in ids[30:40]:
            world.delete(message_id)
        world.expire_history()

    before = sync.index()
    expected_rows, hooked_rows = changed_rows(sync, before, lambda: (changes_while_away(), sync.sync()))
    sync.assert_matches(world)
    assert hooked_rows == expected_rows, "no hook for an unchanged row"
    assert len(hooked_rows) < len(before) // 10
    assert int(sync.history_id()) >= int(cursor)
    assert sync.account_state()[:2] == ("ok", 0)
    # And the fresh cursor works: the next change comes through the feed.
    world.modify(ids[100], add=("STARRED",))
    sync.sync()
    sync.assert_matches(world)


# ---------------------------------------------------------------------------
# faults
# ---------------------------------------------------------------------------


@pytest.fixture
def synced(pg_db, gmail):
    """A small mailbox, indexed; new mail waiting for the next pass."""
    world = gmail.world
    labels = [world.add_label(name) for name in ("A", "B")]
    ids = seed(world, 120, labels, rng=random.Random(SEED + 2))
    sync = GmailSync.on(pg_db, gmail, SyncSettings(folder_listing_interval=3600))
    sync.full_sync()
    seed(world, 60, labels, rng=random.Random(SEED + 3), start=1000, base_ms=1_800_000_000_000)
    for message_id in ids[:10]:
        world.modify(message_id, remove=("UNREAD",), add=(labels[1],))
    return sync, world


RATE_FAULTS = [
    pytest.param(429, None, 1, id="429-retry-after"),
    pytest.param(429, None, None, id="429"),
    pytest.param(403, "rateLimitExceeded", None, id="403-rateLimitExceeded"),
    pytest.param(403, "userRateLimitExceeded", None, id="403-userRateLimitExceeded"),
    pytest.param(500, None, None, id="500"),
    pytest.param(503, None, None, id="503"),
]


@pytest.mark.parametrize(("status", "reason", "retry_after"), RATE_FAULTS)
@pytest.mark.parametrize("method", ["gmail.users.history.list", "batch", "gmail.users.messages.get"])
def test_throttling_and_server_errors_are_retried_and_lose_nothing(synced, method, status, reason, retry_after):
    sync, world = synced
    world.fail_next(method, status, reason=reason, retry_after=retry_after, count=2)
    started = time.monotonic()
    sync.sync()
    elapsed = time.monotonic() - started
    sync.assert_matches(world)
    assert sync.account_state()[:2] == ("ok", 0)
    stats = sync.opened[-1].client.stats
    assert stats["retries"] + stats["item_retries"] >= 2, "the fault fired and was retried"
    if retry_after:
        # Two calls refused in a row wait twice; two items refused in one batch, once.
        pauses = 1 if method == "gmail.users.messages.get" else 2
        assert elapsed >= pauses * retry_after, "Retry-After is honoured"


def test_an_item_failing_inside_a_batch_is_retried_not_dropped(synced):
    sync, world = synced
    newest = sorted(world.message_ids("ALL"))[-5:]
    for message_id in newest:
        world.fail_batch_item(message_id, 500, count=2)
    world.fail_batch_item(newest[0], 429, count=1)
    sync.sync()
    sync.assert_matches(world)
    assert sync.opened[-1].client.stats["item_retries"] == 11
    assert sync.account_state()[:2] == ("ok", 0)


def test_a_batch_item_failing_during_bootstrap_is_retried(pg_db, gmail):
    world = gmail.world
    ids = seed(world, 80)
    for message_id in ids[-30:]:
        world.fail_batch_item(message_id, 503)
    sync = GmailSync.on(pg_db, gmail)
    sync.full_sync()
    sync.assert_matches(world)


def test_a_fault_that_outlasts_the_retries_is_recorded_and_the_next_pass_loses_nothing(synced):
    sync, world = synced
    world.fail_next("gmail.users.history.list", 503, count=50)
    sync.sync()
    state, failures, error = sync.account_state()
    assert (state, failures) == ("ok", 1)
    assert "kept failing" in error and "history" in error
    world._faults.clear()  # the outage ends
    sync.sync()
    sync.assert_matches(world)
    assert sync.account_state()[:2] == ("ok", 0)


def test_an_expired_access_token_is_refreshed_once(synced):
    sync, world = synced
    world.expire_access_tokens()
    tokens = world.calls["token"]
    sync.sync()
    sync.assert_matches(world)
    assert world.calls["token"] == tokens + 1
    assert sync.account_state()[:2] == ("ok", 0)


def test_a_401_after_the_refresh_asks_for_a_reconnect(synced):
    sync, world = synced
    world.fail_next("gmail.users.history.list", 401, count=2)
    sync.sync()
    state, _failures, error = sync.account_state()
    assert state == "reconnect_needed"
    assert "reconnect the account" in error and "Connect Gmail" in error


def test_a_revoked_refresh_token_asks_for_a_reconnect_with_a_clear_message(synced):
    sync, world = synced
    world.revoke_refresh_token()
    world.expire_access_tokens()
    sync.sync()
    state, _failures, error = sync.account_state()
    assert state == "reconnect_needed"
    assert "invalid_grant" in error and "reconnect the account" in error
    assert world.refresh_token not in error and "ya29" not in error, "no token in the message"


def test_a_slow_answer_is_a_timeout_retried(synced):
    sync, world = synced
    sync.config_options["timeout"] = 0.5
    world.slow_next("gmail.users.history.list", 1.5)
    sync.sync()
    sync.assert_matches(world)
    assert sync.opened[-1].client.stats["timeouts"] == 1
    assert sync.account_state()[:2] == ("ok", 0)


def test_a_server_that_stays_slow_is_a_transient_failure_recorded_with_nothing_lost(synced):
    sync, world = synced
    sync.config_options.update(timeout=0.3, max_tries=2)
    world.slow_next("batch", 1.0, count=2)
    before = sync.index()
    sync.sync()
    state, failures, error = sync.account_state()
    assert (state, failures) == ("ok", 1)
    assert "did not answer in time" in error
    assert all(sync.index().get(key) is not None for key in before if key in expected_index(world))
    time.sleep(1.0)  # the slow answers drain
    sync.sync()
    sync.assert_matches(world)


# ---------------------------------------------------------------------------
# quota
# ---------------------------------------------------------------------------


def test_the_pacer_never_spends_more_than_the_quota_in_a_rolling_minute():
    """Simulated time: 40 minutes of greedy demand in calls of 1 to 250 units."""
    now = [0.0]
    pacer = QuotaPacer(15000, clock=lambda: now[0], sleep=lambda seconds: now.__setitem__(0, now[0] + seconds))
    rng = random.Random(SEED)
    spent = []
    while now[0] < 2400:
        units = rng.choice((1, 2, 5, 5, 5, 250))
        pacer.acquire(units)
        spent.append((now[0], units))
        now[0] += 0.001
    worst, start, total = 0, 0, 0
    for when, units in spent:
        total += units
        while spent[start][0] <= when - WINDOW:
            total -= spent[start][1]
            start += 1
        worst = max(worst, total)
    assert worst <= 15000
    assert sum(units for _, units in spent) / (now[0] / 60) >= 0.9 * 15000, "and it uses the quota"


def test_with_a_low_quota_the_adapter_paces_itself_instead_of_being_refused(pg_db):
    """1,200 units a minute on both sides, a demand of about 1,700 units: over a minute, ~0 refusals."""
    with GmailServer() as server:
        world = server.world
        world.quota_per_minute = 1200
        seed(world, 150, rng=random.Random(SEED + 4))
        sync = GmailSync.on(pg_db, server, SyncSettings(first_chunk=20, chunk=50), quota_per_minute=1200)
        started = time.monotonic()
        sync.full_sync()
        elapsed = time.monotonic() - started
        sync.assert_matches(world)
        assert world.units_spent > 1200, "the demand exceeded one minute's quota"
        assert elapsed > 20, "so the adapter had to wait"
        assert world.refusals <= 1
        assert sync.account_state()[:2] == ("ok", 0)


# ---------------------------------------------------------------------------
# kill -9
# ---------------------------------------------------------------------------

DELAY = 0.004


def spawn(pg_db, server, sync, settings, stderr, **extra):
    spec = {"pg": pg_db.server, "dbname": pg_db.dbname, "settings": settings, "delay": DELAY,
            "hook_table": HOOK_TABLE, "url": server.url, "refresh_token": server.world.refresh_token,
            "account_id": sync.account_id, **extra}
    return subprocess.Popen([sys.executable, "-m", "tests.harness.gmail_engine", json.dumps(spec)], cwd=REPO,
                            env={**os.environ, "PYTHONPATH": REPO}, stdout=subprocess.DEVNULL, stderr=stderr)


def kill_at(sync, worker, progress, threshold, extra, errors, timeout=60):
    deadline = time.monotonic() + timeout
    while progress() < threshold:
        assert worker.poll() is None, f"the worker ended before its kill point:\n{errors.read_text()[-3000:]}"
        assert time.monotonic() < deadline, "the worker never reached its kill point"
        time.sleep(0.005)
    time.sleep(extra)
    assert worker.poll() is None, "the worker finished before its kill point; make it slower"
    worker.send_signal(signal.SIGKILL)
    worker.wait()


def wait_backends_gone(sync, baseline, timeout=10):
    deadline = time.monotonic() + timeout
    while True:
        rows = sync.query("SELECT pid FROM pg_stat_activity WHERE datname = current_database() "
                          "AND pid <> pg_backend_pid()")
        if not {pid for (pid,) in rows} - baseline:
            return
        assert time.monotonic() < deadline, "the killed worker's database sessions outlived it"
        time.sleep(0.01)


def backends(sync):
    return {pid for (pid,) in sync.query("SELECT pid FROM pg_stat_activity WHERE datname = current_database() "
                                         "AND pid <> pg_backend_pid()")}


def assert_each_row_announced_new_once(sync, hook_log):
    rows = hook_log(f"""SELECT i.id, count(h.id) FILTER (WHERE h.is_new)
                          FROM maildesk_message_index i LEFT JOIN {HOOK_TABLE} h ON h.index_id = i.id
                         WHERE i.account_id = %s GROUP BY i.id""", [sync.account_id])
    wrong = sorted((index_id, count) for index_id, count in rows if count != 1)
    assert not wrong, f"index rows announced as new other than once (id, times): {wrong[:10]}"


def committed_rows(sync):
    return sync.query("SELECT count(*) FROM maildesk_message_index WHERE account_id = %s", [sync.account_id])[0][0]


KILL_BOOTSTRAP = {"first_chunk": 20, "chunk": 20, "bootstrap_limit": 150, "lease_ttl": 300}


@pytest.mark.parametrize("point", range(3))
def test_kill_9_at_a_random_point_of_a_bootstrap(point, pg_db, gmail, hook_log, tmp_path):
    rng = random.Random(f"{SEED}:bootstrap:{point}")
    world = gmail.world
    labels = [world.add_label(name) for name in ("A", "B", "C")]
    seed(world, 300, labels, rng=rng)
    sync = GmailSync.on(pg_db, gmail, SyncSettings(**KILL_BOOTSTRAP))
    sync.ctx.hooks = SlowHooks(0, sync.conn.cursor(), HOOK_TABLE, "survivor")
    low, high = [(0, 1), (20, 300), (300, 600)][point]
    threshold = rng.randrange(low, high)
    extra = rng.uniform(0, 0.1 if threshold == 0 else 20 * DELAY)
    baseline = backends(sync)
    errors = tmp_path / "worker.err"
    with open(errors, "w") as stderr:
        worker = spawn(pg_db, gmail, sync, KILL_BOOTSTRAP, stderr)
        kill_at(sync, worker, lambda: committed_rows(sync), threshold, extra, errors)
    wait_backends_gone(sync, baseline)

    committed = committed_rows(sync)
    dead = hook_log(f"SELECT count(*) FROM {HOOK_TABLE} WHERE is_new AND who LIKE 'worker-%%'")[0][0]
    assert dead == committed, "the dead worker's log is exactly its committed rows"
    index, expected = sync.index(), expected_index(world)
    assert all(expected.get(key) == flags for key, flags in index.items()), "nothing half-written"

    sync.full_sync()
    sync.assert_matches(world)
    assert_each_row_announced_new_once(sync, hook_log)
    assert sync.account_state()[:2] == ("ok", 0)


KILL_SYNC = {"first_chunk": 50, "chunk": 50, "bootstrap_limit": 1500, "lease_ttl": 300,
             "folder_listing_interval": 3600}


@pytest.mark.parametrize("point", range(3))
def test_kill_9_at_a_random_point_of_an_incremental_pass(point, pg_db, gmail, hook_log, tmp_path):
    """A backlog (new mail, label and flag changes, deletes) read 25 history records a step, killed."""
    rng = random.Random(f"{SEED}:sync:{point}")
    world = gmail.world
    labels = [world.add_label(name) for name in ("A", "B", "C")]
    ids = seed(world, 200, labels, rng=rng)
    sync = GmailSync.on(pg_db, gmail, SyncSettings(**KILL_SYNC), history_page=25)
    sync.ctx.hooks = SlowHooks(0, sync.conn.cursor(), HOOK_TABLE, "setup")
    sync.full_sync()
    cursor = int(sync.history_id())

    seed(world, 120, labels, rng=rng, start=1000, base_ms=1_800_000_000_000)
    for message_id in rng.sample(ids, 40):
        world.modify(message_id, add=(rng.choice(labels),), remove=("INBOX",))
    for message_id in rng.sample(ids, 30):
        world.modify(message_id, remove=("UNREAD",), add=("STARRED",))
    for message_id in rng.sample(ids, 10):
        if message_id in world.message_ids():
            world.delete(message_id)

    low, high = [(0, 1), (20, 150), (150, 250)][point]
    threshold = committed_rows(sync) + rng.randrange(low, high)
    extra = rng.uniform(0, 0.1 if low == 0 else 0.03)
    baseline = backends(sync)
    errors = tmp_path / "worker.err"
    with open(errors, "w") as stderr:
        worker = spawn(pg_db, gmail, sync, KILL_SYNC, stderr, mode="sync", config={"history_page": 25})
        kill_at(sync, worker, lambda: committed_rows(sync), threshold, extra, errors)
    wait_backends_gone(sync, baseline)
    assert int(sync.history_id()) >= cursor

    sync.ctx.hooks.who = "survivor"
    sync.sync()
    sync.assert_matches(world)
    assert_each_row_announced_new_once(sync, hook_log)
    assert sync.account_state()[:2] == ("ok", 0)


# ---------------------------------------------------------------------------
# the adapter alone
# ---------------------------------------------------------------------------


def test_metadata_and_raw_bytes_of_a_message(gmail):
    world = gmail.world
    raw = (b"From: =?utf-8?q?Ren=C3=A9e?= <renee@example.org>\r\nTo: a@example.com, \"B, C\" <b@example.com>\r\n"
           b"Cc: c@example.com\r\nSubject: =?utf-8?q?Caf=C3=A9?= it's\r\nMessage-ID: <x1@example.org>\r\n"
           b"In-Reply-To: <x0@example.org>\r\nReferences: <w@example.org> <x0@example.org>\r\n"
           b"Date: Tue, 2 Jan 2024 10:00:00 +0200\r\n\r\nIt's here\r\n")
    message_id = world.add_message(raw, ("INBOX", "STARRED"), internal_date=1_704_189_600_000)
    mailbox = GmailMailbox(gmail_config(gmail.url, TokenSource(gmail.token_url, world.refresh_token)))
    try:
        assert mailbox.identity == "gmail:user@example.com"
        inbox = FolderState(id=1, account_id=1, path="INBOX", remote_id="INBOX")
        [meta] = mailbox.fetch(inbox, [message_id])
        assert (meta.remote_id, meta.subject) == (message_id, "Café it's")
        assert meta.from_address == "Renée <renee@example.org>"
        assert meta.to_addresses == 'a@example.com, "B, C" <b@example.com>'
        assert (meta.cc_addresses, meta.message_id, meta.in_reply_to) == ("c@example.com", "<x1@example.org>",
                                                                          "<x0@example.org>")
        assert meta.references == "<w@example.org> <x0@example.org>"
        flags = meta.flags
        assert (flags.seen, flags.flagged, flags.answered, flags.draft) == (True, True, False, False)
        assert meta.internal_date.isoformat() == "2024-01-02T10:00:00"
        assert meta.date.isoformat() == "2024-01-02T08:00:00"
        assert meta.snippet == "It's here" and meta.size == len(raw) and meta.parse_error is None
        assert mailbox.fetch_raw(inbox, message_id) == raw
        world.delete(message_id)
        assert mailbox.fetch_raw(inbox, message_id) is None
        assert mailbox.fetch(inbox, [message_id]) == []
    finally:
        mailbox.close()
