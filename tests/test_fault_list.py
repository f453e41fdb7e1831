"""DESIGN §5, the fault list, for IMAP: real Dovecot, real PostgreSQL at REPEATABLE READ, production code.

After every fault the index equals the server for each folder involved, no
delivery key is doubled, and no row is announced to the after-upsert hook as
new twice. The hook writes what it is told into ``fault_hook_log`` inside the
engine's own transaction (as an add-on's hook writes inside Odoo's cursor), so
a dead worker's rolled-back chunk is gone from the log too, and the log says
exactly what every worker, dead or alive, committed.

1. ``kill -9`` at seeded random points of a bootstrap, an incremental pass
   (a backlog of new mail, flag changes and expunges by another client) and a
   backfill, in a worker process (``harness/worker.py``); the test process
   then takes the account over at once (the dead holder's pid is gone) and
   finishes equal to the server.
2. Two worker processes on the same three accounts, every use case in a loop,
   while another client changes the mailboxes.
3. A TCP connection cut in the middle of a FETCH answer
   (``harness/tcp_proxy.py``), mid-bootstrap and mid-incremental.
4. An expired cursor: UIDVALIDITY changed under the same folder and the same
   UIDs (``doveadm mailbox update --uid-validity``), also mid-backfill. A folder
   deleted and re-created is ``test_sync_engine.py::test_uidvalidity_change_reindexes_the_folder``.
5. Revoked credentials mid-life: the Dovecot password changed under an
   indexed account; a save during a failing run wins.
"""

import dataclasses
import datetime as dt
import json
import os
import random
import signal
import subprocess
import sys
import time

import pytest

from maildesk_mail_client.application.ports import SyncSettings
from maildesk_mail_client.application.use_cases import backfill
from maildesk_mail_client.providers.imap.mailbox import ImapMailbox
from maildesk_mail_client.repositories.lease_holders import parse_holder

from .harness.sync_world import SyncWorld, imap_config
from .harness.tcp_proxy import TcpProxy
from .harness.worker import SlowHooks

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SEED = 20250611
HOOK_TABLE = "fault_hook_log"
KILL_POINTS = 3
DELAY = 0.004  # the worker's hook sleeps this long per row, inside the transaction


# ---------------------------------------------------------------------------
# helpers
# ---------------------------------------------------------------------------


def make_world(pg_db, mailbox, settings, who="test", account_id=None):
    world = SyncWorld(pg_db, mailbox, settings, account_id=account_id)
    world.ctx.hooks = SlowHooks(0, world.conn.cursor(), HOOK_TABLE, who)
    return world


def query(world, sql, params=()):
    cr = world.conn.cursor()
    cr.execute(sql, list(params))
    rows = cr.fetchall() if cr.description else None
    world.conn.commit()
    return rows


def account_state(world):
    return query(world, "SELECT auth_state, failure_count, backoff_until, last_error FROM mailbox_account "
                        "WHERE id = %s", [world.account_id])[0]


def now_utc():
    return dt.datetime.now(dt.timezone.utc).replace(tzinfo=None)


def index_keys(world, paths):
    """{(path, uid)} of every row of the account, live or not: what was committed."""
    rows = query(world, """SELECT f.path, i.uid FROM maildesk_message_index i
                            JOIN maildesk_folder f ON f.id = i.folder_id WHERE i.account_id = %s""",
                 [world.account_id])
    return {(path, uid) for path, uid in rows if path in paths}


def server_keys(world, paths):
    return {(path, uid) for path in paths for uid in world.server(path)}


def announced_new(world, hook_log, who_prefix):
    """{(path, uid)} the hook log says ``who`` announced as new, asserting none twice."""
    rows = hook_log(f"""SELECT f.path, h.uid FROM {HOOK_TABLE} h JOIN maildesk_folder f ON f.id = h.folder_id
                        WHERE h.is_new AND h.account_id = %s AND h.who LIKE %s""", [world.account_id, who_prefix + "%"])
    keys = [(path, uid) for path, uid in rows]
    doubled = sorted({key for key in keys if keys.count(key) > 1})
    assert not doubled, f"{who_prefix}: announced as new twice: {doubled[:10]}"
    return set(keys)


def assert_each_row_announced_new_once(world, hook_log):
    """Every index row of the account, live or expunged, was announced as new exactly once, by anyone."""
    rows = hook_log(f"""SELECT i.id, count(h.id) FILTER (WHERE h.is_new)
                          FROM maildesk_message_index i LEFT JOIN {HOOK_TABLE} h ON h.index_id = i.id
                         WHERE i.account_id = %s GROUP BY i.id""", [world.account_id])
    wrong = sorted((index_id, count) for index_id, count in rows if count != 1)
    assert not wrong, f"index rows announced as new other than once (id, times): {wrong[:10]}"


def worker_spec(pg_db, mailbox, settings, **extra):
    return {"pg": pg_db.server, "dbname": pg_db.dbname, "settings": settings, "delay": DELAY,
            "hook_table": HOOK_TABLE, "mailbox": mailbox_spec(mailbox), **extra}


def mailbox_spec(mailbox):
    return {"host": mailbox.host, "port": mailbox.port, "login": mailbox.login, "password": mailbox.password}


def spawn(spec, stderr):
    return subprocess.Popen([sys.executable, "-m", "tests.harness.worker", json.dumps(spec)], cwd=REPO,
                            env={**os.environ, "PYTHONPATH": REPO}, stdout=subprocess.DEVNULL, stderr=stderr)


def lease_holder(world):
    rows = query(world, "SELECT holder FROM maildesk_account_lease WHERE account_id = %s AND purpose = 'sync'",
                 [world.account_id])
    return rows[0][0] if rows else None


def holder_pid(holder):
    parsed = parse_holder(holder)
    return parsed[1] if parsed else None


def backends(world):
    return {pid for (pid,) in query(world, "SELECT pid FROM pg_stat_activity WHERE datname = current_database() "
                                           "AND pid <> pg_backend_pid()")}


def kill_at(world, worker, progress, threshold, extra, errors, timeout=30):
    """SIGKILL ``worker`` ``extra`` seconds after ``progress()`` reached ``threshold`` committed rows.

    Only once the worker has started working (it held the account's lease, or
    committed something), so no point is wasted on the interpreter starting up.
    """
    deadline = time.monotonic() + timeout
    started = False
    while True:
        assert worker.poll() is None, f"the worker ended before its kill point:\n{_read(errors)}"
        assert time.monotonic() < deadline, "the worker never reached its kill point"
        holder = lease_holder(world)
        started = started or holder_pid(holder) == worker.pid or progress() > 0
        if started and progress() >= threshold:
            break
        time.sleep(0.005)
    time.sleep(extra)
    assert worker.poll() is None, f"the worker finished before its kill point; make it slower\n{_read(errors)}"
    worker.send_signal(signal.SIGKILL)
    worker.wait()


def wait_backends_gone(world, baseline, timeout=10):
    """PostgreSQL ends a dead client's backend (and rolls its transaction back) as soon as it reads EOF."""
    deadline = time.monotonic() + timeout
    while backends(world) - baseline:
        assert time.monotonic() < deadline, "the killed worker's database sessions outlived it"
        time.sleep(0.01)


def assert_walk_consistent(world, path):
    """What a killed bootstrap or backfill left: exactly the server's UIDs from the folder's ``low_uid`` up."""
    folder = world.folders().get(path)
    low = folder.low_uid if folder else 0
    expected = {uid for uid in world.server(path) if low and uid >= low}
    assert set(world.index(path)) == expected, (
        f"{path}: the committed rows are not the UIDs from low_uid {low} up")


def assert_taken_over_at_once(world, worker):
    holder = lease_holder(world)
    if holder is not None:  # killed between two runs of its loop, it held none
        assert holder_pid(holder) == worker.pid, f"the lease is held by {holder}, not by the dead worker"


def _read(path):
    try:
        with open(path, errors="replace") as stream:
            return stream.read()[-3000:]
    except OSError:
        return ""


def kill_point(*names):
    """A seeded generator per test and point: the kill points are the same on every run."""
    return random.Random(":".join(map(str, (SEED, *names))))


# ---------------------------------------------------------------------------
# 1. kill -9 at random points
# ---------------------------------------------------------------------------

BOOTSTRAP = {"first_chunk": 20, "chunk": 20, "bootstrap_limit": 1500, "lease_ttl": 300}


@pytest.mark.parametrize("point", range(KILL_POINTS))
def test_kill_9_at_a_random_point_of_a_bootstrap(point, pg_db, hook_log, dovecot, tmp_path):
    """Killed, the worker leaves exactly what it checkpointed; the next run takes over and finishes."""
    rng = kill_point("bootstrap", point)
    mailbox = dovecot.add_user()
    dovecot.seed(mailbox, "INBOX", 240)
    dovecot.seed(mailbox, "Archive", 100, start=1000)
    paths = ("INBOX", "Archive")
    world = make_world(pg_db, mailbox, SyncSettings(**BOOTSTRAP), who="survivor")
    total = 340
    # One point in each stretch: discovery and the first chunk, INBOX's walk down, the second folder.
    low, high = [(0, 1), (20, 200), (240, 300)][point]
    threshold = rng.randrange(low, high)
    extra = rng.uniform(0, 0.1 if threshold == 0 else BOOTSTRAP["chunk"] * DELAY)

    baseline = backends(world)
    errors = tmp_path / "worker.err"
    with open(errors, "w") as stderr:
        worker = spawn(worker_spec(pg_db, mailbox, BOOTSTRAP, account_id=world.account_id), stderr)
        kill_at(world, worker, lambda: len(index_keys(world, paths)), threshold, extra, errors)
    wait_backends_gone(world, baseline)

    committed = index_keys(world, paths)
    for path in paths:
        assert_walk_consistent(world, path)
    assert announced_new(world, hook_log, "worker-") == committed, "the dead worker's log is its committed rows"
    assert_taken_over_at_once(world, worker)

    assert world.bootstrap_once() is not None, "the dead worker's lease was not taken over at once"
    world.full_sync()
    assert sum(world.assert_index_matches_server(path) for path in paths) == total
    survivor = announced_new(world, hook_log, "survivor")
    assert not survivor & committed, "the survivor announced as new a row the dead worker had committed"
    assert survivor | committed == server_keys(world, paths)
    assert_each_row_announced_new_once(world, hook_log)
    assert account_state(world)[:2] == ("ok", 0)


INCREMENTAL = {"first_chunk": 50, "chunk": 10, "bootstrap_limit": 1500, "lease_ttl": 300}


@pytest.mark.parametrize("server", ["full", "basic"])
@pytest.mark.parametrize("point", range(KILL_POINTS))
def test_kill_9_at_a_random_point_of_an_incremental_pass(point, server, pg_db, hook_log, dovecot,
                                                         dovecot_basic, tmp_path):
    """A pass over a backlog (120 new, 20 flag changes, 10 expunges), killed; with and without CONDSTORE."""
    rng = kill_point("incremental", server, point)
    imap = dovecot if server == "full" else dovecot_basic
    mailbox = imap.add_user()
    imap.seed(mailbox, "INBOX", 150)
    world = make_world(pg_db, mailbox, SyncSettings(**INCREMENTAL), who="setup")
    world.full_sync()
    before = world.index()
    old_last = world.folders()["INBOX"].last_uid

    # The backlog another client leaves: new mail, flags set and cleared, expunges.
    old = sorted(before)
    flagged, expunged = rng.sample(old[:-1], 30)[:20], rng.sample(old[:-1], 30)[20:]
    client = mailbox.client()
    client.select_folder("INBOX")
    client.add_flags(flagged[:12], [b"\\Seen", b"\\Flagged"])
    client.add_flags(flagged[12:], [b"\\Answered"])
    client.delete_messages(expunged)
    client.expunge()
    client.logout()
    imap.seed(mailbox, "INBOX", 120, start=1000)
    server_after = world.server()
    new_on_server = {uid for uid in server_after if uid > old_last}
    changed = {uid for uid in server_after if uid <= old_last and server_after[uid] != before[uid]}

    # One point in each stretch: the start (the flag changes and expunges come first with CONDSTORE),
    # the backlog of new mail, its end (without CONDSTORE the reconciliation of flags comes last).
    low, high = [(0, 1), (10, 80), (90, 100) if server == "full" else (120, 121)][point]
    threshold = rng.randrange(low, high)
    extra = rng.uniform(0, 0.15 if threshold == 0 else 0.03)
    baseline = backends(world)
    errors = tmp_path / "worker.err"
    with open(errors, "w") as stderr:
        worker = spawn(worker_spec(pg_db, mailbox, INCREMENTAL, account_id=world.account_id, mode="sync"), stderr)
        kill_at(world, worker, lambda: sum(1 for uid in world.index() if uid > old_last), threshold, extra, errors)
    wait_backends_gone(world, baseline)

    # Nothing half-done: the new mail is exactly the server's up to the committed last_uid, and the
    # old range is either untouched or fully brought level (flags and expunges are one step).
    index = world.index()
    last_uid = world.folders()["INBOX"].last_uid
    committed_new = {uid for uid in index if uid > old_last}
    assert committed_new == {uid for uid in new_on_server if uid <= last_uid}
    old_part = {uid: flags for uid, flags in index.items() if uid <= old_last}
    server_old = {uid: flags for uid, flags in server_after.items() if uid <= old_last}
    assert old_part in (before, server_old), "flag changes or expunges were committed half"
    dead_new = {uid for path, uid in announced_new(world, hook_log, "worker-")}
    assert dead_new == committed_new, "the dead worker's log is its committed rows"
    assert_taken_over_at_once(world, worker)

    world.ctx.hooks.who = "survivor"
    assert world.sync() is not None, "the dead worker's lease was not taken over at once"
    assert world.assert_index_matches_server() == 150 - 10 + 120
    survivor_new = {uid for _path, uid in announced_new(world, hook_log, "survivor")}
    assert not survivor_new & committed_new
    assert survivor_new | committed_new == new_on_server
    updates = hook_log(f"SELECT uid FROM {HOOK_TABLE} WHERE NOT is_new AND who <> 'setup' AND account_id = %s",
                       [world.account_id])
    assert sorted(uid for (uid,) in updates) == sorted(changed), "each flag change is announced once"
    assert_each_row_announced_new_once(world, hook_log)
    assert account_state(world)[:2] == ("ok", 0)


BACKFILL = {"first_chunk": 20, "chunk": 20, "bootstrap_limit": 40, "lease_ttl": 300}


@pytest.mark.parametrize("point", range(KILL_POINTS))
def test_kill_9_at_a_random_point_of_a_backfill(point, pg_db, hook_log, dovecot, tmp_path):
    """Two folders with history left below the bootstrap bound, a backfill killed."""
    rng = kill_point("backfill", point)
    mailbox = dovecot.add_user()
    dovecot.seed(mailbox, "INBOX", 260)
    dovecot.seed(mailbox, "Archive", 120, start=1000)
    paths = ("INBOX", "Archive")
    world = make_world(pg_db, mailbox, SyncSettings(**BACKFILL), who="setup")
    world.bootstrap_all()
    bootstrapped = index_keys(world, paths)
    assert len(bootstrapped) == 80
    # One point in each stretch: the start, the middle, near the end.
    low, high = [(0, 1), (40, 200), (200, 260)][point]
    threshold = rng.randrange(low, high)
    extra = rng.uniform(0, (3 if threshold == 0 else 1) * BACKFILL["chunk"] * DELAY)

    baseline = backends(world)
    errors = tmp_path / "worker.err"
    with open(errors, "w") as stderr:
        worker = spawn(worker_spec(pg_db, mailbox, BACKFILL, account_id=world.account_id, mode="backfill"), stderr)
        kill_at(world, worker, lambda: len(index_keys(world, paths)) - 80, threshold, extra, errors)
    wait_backends_gone(world, baseline)

    committed = index_keys(world, paths) - bootstrapped
    for path in paths:
        assert_walk_consistent(world, path)
    assert announced_new(world, hook_log, "worker-") == committed, "the dead worker's log is its committed rows"
    assert_taken_over_at_once(world, worker)

    world.ctx.hooks.who = "survivor"
    visited, _indexed, pending = backfill(world.ctx, world.deadline())
    assert visited >= 1 and pending == 0, "the dead worker's lease was not taken over at once"
    for path in paths:
        assert world.folders()[path].backfill_state == "done"
    world.sync()
    assert sum(world.assert_index_matches_server(path) for path in paths) == 380
    survivor = announced_new(world, hook_log, "survivor")
    assert not survivor & committed
    assert survivor | committed | bootstrapped == server_keys(world, paths)
    assert_each_row_announced_new_once(world, hook_log)
    assert account_state(world)[:2] == ("ok", 0)


# ---------------------------------------------------------------------------
# 2. two workers on the same accounts
# ---------------------------------------------------------------------------

LOOP = {"first_chunk": 20, "chunk": 20, "bootstrap_limit": 60, "lease_ttl": 300}


def dispatching(worlds):
    """Backfill claims any account's folder: each world opens whichever mailbox it is given."""
    mailboxes = {world.account_id: world.mailbox for world in worlds}
    for world in worlds:
        world.ctx.mailboxes = lambda account_id, w=world: ImapMailbox.open_account(
            imap_config(mailboxes[account_id]), w.ctx.settings.search_window)


def test_two_worker_processes_on_the_same_accounts(pg_db, hook_log, dovecot, dovecot_basic, tmp_path):
    """Two processes, each looping bootstrap + sync + backfill over the same three accounts (two with
    CONDSTORE/QRESYNC, one without), while another client adds mail, sets flags and expunges."""
    rng = kill_point("two-workers")
    mailboxes = [dovecot.add_user(), dovecot.add_user(), dovecot_basic.add_user()]
    servers = [dovecot, dovecot, dovecot_basic]
    for imap, mailbox in zip(servers, mailboxes, strict=True):
        imap.seed(mailbox, "INBOX", 160)
        imap.seed(mailbox, "Archive", 60, start=1000)
    worlds = [make_world(pg_db, mailbox, SyncSettings(**LOOP), who="final") for mailbox in mailboxes]
    dispatching(worlds)
    accounts = [{"account_id": w.account_id, "mailbox": mailbox_spec(w.mailbox)} for w in worlds]

    workers = []
    for n in range(2):
        spec = worker_spec(pg_db, mailboxes[0], LOOP, mode="loop", accounts=accounts, rounds=4, seed=n)
        spec["delay"] = 0.001
        stderr = open(tmp_path / f"worker{n}.err", "w")  # noqa: SIM115 - closed below
        workers.append((spawn(spec, stderr), stderr))

    # Another client works on the mailboxes meanwhile.
    deadline = time.monotonic() + 60
    number = 5000
    while any(worker.poll() is None for worker, _err in workers):
        assert time.monotonic() < deadline, "the workers did not finish"
        for imap, mailbox in zip(servers, mailboxes, strict=True):
            client = mailbox.client()
            client.select_folder("INBOX")
            uids = sorted(client.search("ALL"))
            client.add_flags(rng.sample(uids, 3), [b"\\Seen"])
            client.delete_messages(rng.sample(uids, 1))
            client.expunge()
            client.logout()
            imap.seed(mailbox, rng.choice(["INBOX", "Archive"]), 2, start=number)
            number += 2
        time.sleep(0.2)
    outputs = []
    for n, (worker, stderr) in enumerate(workers):
        stderr.close()
        outputs.append(_read(tmp_path / f"worker{n}.err"))
        assert worker.returncode == 0, f"worker {n} ended with {worker.returncode}:\n{outputs[-1]}"
    for output in outputs:
        assert "Traceback" not in output and "unexpected error" not in output, output
    for world in worlds:
        state = account_state(world)
        assert (state[0], state[1], state[3]) == ("ok", 0, None), f"account {world.account_id}: {state}"
        assert query(world, "SELECT count(*) - count(DISTINCT delivery_key) FROM maildesk_message_index")[0][0] == 0

    # What the other client did after a worker's last pass, the next ordinary pass brings in.
    for world in worlds:
        world.full_sync()
    for world in worlds:
        for path in ("INBOX", "Archive"):
            world.assert_index_matches_server(path)
        assert_each_row_announced_new_once(world, hook_log)
        announced_new(world, hook_log, "")
    busy = hook_log(f"SELECT count(DISTINCT who) FROM {HOOK_TABLE} WHERE who LIKE 'worker-%'")[0][0]
    assert busy == 2, "both workers indexed something"


# ---------------------------------------------------------------------------
# 3. a TCP connection cut in the middle of a FETCH answer
# ---------------------------------------------------------------------------

CUT_AFTER = 3000  # bytes of the answer that pass; a chunk of 20 messages' metadata is several times that


@dataclasses.dataclass(frozen=True)
class Proxied:
    """The engine connects through the proxy; the test's own look at the server goes direct."""

    host: str
    port: int
    login: str
    password: str
    direct: object

    def client(self):
        return self.direct.client()


def through(proxy, mailbox):
    return Proxied(proxy.host, proxy.port, mailbox.login, mailbox.password, mailbox)


def assert_transient_failure(world, proxy, after=CUT_AFTER):
    assert proxy.cut.is_set(), "the proxy never cut the connection"
    assert not proxy.cut_info["completed"] and proxy.cut_info["bytes"] == after, proxy.cut_info
    auth_state, failures, backoff_until, last_error = account_state(world)
    assert (auth_state, failures) == ("ok", 1)
    assert backoff_until is not None and backoff_until > now_utc() + dt.timedelta(seconds=30)
    assert "connection" in last_error.lower() and str(proxy.port) in last_error, last_error
    # The cron skips it until the backoff ends.
    assert world.account_id not in world.ctx.accounts.due_for_sync("imap")
    world.conn.commit()


def reset_backoff(world):
    query(world, "UPDATE mailbox_account SET backoff_until = NULL, failure_count = 0 WHERE id = %s",
          [world.account_id])


@pytest.mark.parametrize("after", [1, CUT_AFTER, kill_point("cut").randrange(CUT_AFTER + 1, 10000)])
def test_connection_cut_mid_fetch_during_bootstrap(after, pg_db, hook_log, dovecot):
    """Cut after one byte of the answer, after 3000, and at a seeded random byte (the answer is ~14 kB)."""
    mailbox = dovecot.add_user()
    dovecot.seed(mailbox, "INBOX", 200)
    with TcpProxy(dovecot.host, dovecot.port) as proxy:
        world = make_world(pg_db, through(proxy, mailbox), SyncSettings(first_chunk=20, chunk=20))
        world.bootstrap_once()  # the first chunk, shown at once
        assert len(world.index()) == 20
        world.ctx.notifier.reports.clear()

        proxy.arm(after, pattern=b"BODYSTRUCTURE", nth=3)  # the third chunk of this run
        report = world.bootstrap_once()
        assert_transient_failure(world, proxy, after)
        assert_walk_consistent(world, "INBOX")
        assert len(world.index()) == 20 + 40, "the two chunks before the cut are kept, the cut one is not"
        assert report.new == 40 and world.ctx.notifier.reports == [
            {"account_id": world.account_id, "new": 40, "updated": 0, "removed": 0,
             "folder_ids": [world.folders()["INBOX"].id]}], "only committed work is announced"

        reset_backoff(world)
        world.full_sync()  # through the proxy, unarmed
        assert proxy.connections >= 3
    assert world.assert_index_matches_server() == 200
    assert account_state(world) == ("ok", 0, None, None)
    assert len(announced_new(world, hook_log, "test")) == 200
    assert_each_row_announced_new_once(world, hook_log)


@pytest.mark.parametrize("cut", ["new mail", "flags"])
@pytest.mark.parametrize("server", ["full", "basic"])
def test_connection_cut_mid_fetch_during_incremental_sync(server, cut, pg_db, hook_log, dovecot, dovecot_basic):
    """``new mail``: in the answer to the second chunk of new mail. ``flags``: in the answer to the FETCH
    FLAGS, which is CHANGEDSINCE (and VANISHED) first thing with CONDSTORE, the reconciliation last without."""
    imap = dovecot if server == "full" else dovecot_basic
    mailbox = imap.add_user()
    imap.seed(mailbox, "INBOX", 100)
    with TcpProxy(imap.host, imap.port) as proxy:
        world = make_world(pg_db, through(proxy, mailbox), SyncSettings(chunk=20))
        world.full_sync()
        before = world.index()
        old_last = world.folders()["INBOX"].last_uid
        client = mailbox.client()
        client.select_folder("INBOX")
        client.add_flags([1, 2, 3, 50, 60], [b"\\Seen", b"\\Flagged"])
        client.delete_messages([10, 11, 12])
        client.expunge()
        client.logout()
        imap.seed(mailbox, "INBOX", 70, start=1000)
        server_after = world.server()
        new_on_server = sorted(uid for uid in server_after if uid > old_last)
        server_old = {uid: flags for uid, flags in server_after.items() if uid <= old_last}

        if cut == "new mail":
            after = CUT_AFTER
            proxy.arm(after, pattern=b"BODYSTRUCTURE", nth=2)
        else:
            after = 100  # the CHANGEDSINCE answer to 5 flag changes is a few hundred bytes
            proxy.arm(after, pattern=b" (FLAGS)")
        world.sync()
        assert_transient_failure(world, proxy, after)
        index = world.index()
        new = sorted(uid for uid in index if uid > old_last)
        old_part = {uid: flags for uid, flags in index.items() if uid <= old_last}
        if cut == "new mail":
            assert new == new_on_server[:20], "one whole chunk, no part of one"
            assert world.folders()["INBOX"].last_uid == new[-1]
            # With CONDSTORE the flag changes and expunges came first, without it the reconciliation comes last.
            assert old_part == (server_old if server == "full" else before)
        elif server == "full":
            assert (new, old_part) == ([], before), "the first step was cut: nothing of it is kept"
        else:
            assert (new, old_part) == (new_on_server, before), "the new mail is kept, the cut reconciliation not"

        reset_backoff(world)
        world.sync()
    assert world.assert_index_matches_server() == 100 - 3 + 70
    assert account_state(world) == ("ok", 0, None, None)
    assert_each_row_announced_new_once(world, hook_log)
    announced_new(world, hook_log, "test")


# ---------------------------------------------------------------------------
# 4. an expired cursor: UIDVALIDITY changed, the same UIDs now name other messages
# ---------------------------------------------------------------------------


def change_uidvalidity(imap, mailbox, path="INBOX"):
    client = mailbox.client()
    old = client.folder_status(path, [b"UIDVALIDITY"])[b"UIDVALIDITY"]
    client.logout()
    imap._doveadm("mailbox", "update", "-u", mailbox.login, "--uid-validity", str(old + 1000), path)
    return old + 1000


def test_uidvalidity_change_of_an_indexed_inbox_resets_it(pg_db, hook_log, dovecot):
    """The same UIDs under a new UIDVALIDITY: every row goes, the folder is indexed anew."""
    mailbox = dovecot.add_user()
    dovecot.seed(mailbox, "INBOX", 60)
    dovecot.seed(mailbox, "Archive", 10, start=1000)
    world = make_world(pg_db, mailbox, SyncSettings(first_chunk=20, chunk=20))
    world.full_sync()
    old_ids = {row["id"] for row in world.rows()}
    archive_ids = {row["id"] for row in world.rows("Archive")}
    new_validity = change_uidvalidity(dovecot, mailbox)
    dovecot.seed(mailbox, "INBOX", 5, start=500)

    world.sync()
    assert world.index() == {}, "rows under the old UIDVALIDITY are dropped"
    world.full_sync()
    assert world.folders()["INBOX"].uidvalidity == new_validity
    assert world.assert_index_matches_server() == 65
    assert not {row["id"] for row in world.rows()} & old_ids
    assert {row["id"] for row in world.rows("Archive")} == archive_ids, "other folders are untouched"
    assert world.assert_index_matches_server("Archive") == 10
    assert_each_row_announced_new_once(world, hook_log)


def test_uidvalidity_change_mid_backfill_starts_the_folder_over(pg_db, hook_log, dovecot):
    mailbox = dovecot.add_user()
    dovecot.seed(mailbox, "INBOX", 120)
    world = make_world(pg_db, mailbox, SyncSettings(first_chunk=20, chunk=20, bootstrap_limit=40))
    world.bootstrap_all()
    assert world.folders()["INBOX"].backfill_state == "pending" and len(world.index()) == 40
    new_validity = change_uidvalidity(dovecot, mailbox)

    world.backfill_all()  # opens the folder, finds the new UIDVALIDITY: reset
    assert world.index() == {} and world.folders()["INBOX"].sync_state == "new"
    world.full_sync()
    assert world.folders()["INBOX"].uidvalidity == new_validity
    assert world.assert_index_matches_server() == 120
    assert_each_row_announced_new_once(world, hook_log)


# ---------------------------------------------------------------------------
# 5. revoked credentials
# ---------------------------------------------------------------------------


def set_password(imap, login, password):
    """Dovecot's passwd-file for the user (harness/dovecot.py keeps one file per user).

    Dovecot re-reads a changed passwd-file at most once a second (its lookup
    remembers the second of the last check), so wait for the next second.
    """
    with open(os.path.join(imap.root, "users", login), "w") as passwd:
        passwd.write(f"{login}:{{PLAIN}}{password}\n")
    time.sleep(1.02 - time.time() % 1)


def save_account(world):
    """What saving the account form does to the columns the engine reads."""
    conn = world.connect()
    with conn.cursor() as cr:
        cr.execute("UPDATE mailbox_account SET auth_state = 'ok', write_date = now() AT TIME ZONE 'UTC' "
                   "WHERE id = %s", [world.account_id])
    conn.commit()
    conn.close()


def login_refusals(imap, login, at_least=0, timeout=3):
    """Dovecot's count of refused passwords for ``login`` (its log is written asynchronously)."""
    deadline = time.monotonic() + timeout
    while True:
        count = sum(1 for line in imap.log().splitlines() if f"passwd-file({login}," in line and "mismatch" in line)
        if count >= at_least or time.monotonic() > deadline:
            return count
        time.sleep(0.02)


def test_revoked_password_asks_for_a_reconnect_then_a_save_resumes(pg_db, hook_log, dovecot):
    mailbox = dovecot.add_user()
    dovecot.seed(mailbox, "INBOX", 60)
    world = make_world(pg_db, mailbox, SyncSettings(first_chunk=20, chunk=20, bootstrap_limit=40))
    world.bootstrap_all()  # INBOX is incremental, with history left for the backfill
    dovecot.seed(mailbox, "INBOX", 5, start=500)  # arrives while the account cannot log in
    set_password(dovecot, mailbox.login, "revoked-by-the-admin")
    try:
        assert world.sync() is not None
        auth_state, failures, backoff_until, last_error = account_state(world)
        assert auth_state == "reconnect_needed"
        assert mailbox.login in last_error and "password" in last_error.lower(), last_error
        assert (failures, backoff_until) == (0, None), "a refused login is not retried with backoff"
        refusals = login_refusals(dovecot, mailbox.login, at_least=1)
        assert refusals == 1

        # No job tries the refused password again: the crons' queries leave the account out.
        assert world.account_id not in world.ctx.accounts.due_for_sync("imap")
        assert world.account_id not in world.ctx.accounts.due_for_bootstrap("imap")
        assert backfill(world.ctx, world.deadline()) == (0, 0, 0)
        time.sleep(0.2)
        assert login_refusals(dovecot, mailbox.login) == refusals, "a job logged in with the refused password"
        assert len(world.index()) == 40, "the index is kept while the account waits for a person"
    finally:
        set_password(dovecot, mailbox.login, mailbox.password)

    save_account(world)
    assert world.account_id in world.ctx.accounts.due_for_sync("imap")
    world.conn.commit()
    world.sync()
    assert account_state(world) == ("ok", 0, None, None)
    assert backfill(world.ctx, world.deadline())[1:] == (20, 0)
    assert world.assert_index_matches_server() == 65
    assert_each_row_announced_new_once(world, hook_log)


def test_a_save_during_a_failing_login_is_not_overwritten(pg_db, hook_log, dovecot):
    """The admin fixes the password while a run with the old one is failing: that run must not
    mark the account as needing a reconnect."""
    mailbox = dovecot.add_user()
    dovecot.seed(mailbox, "INBOX", 10)
    world = make_world(pg_db, mailbox, SyncSettings())
    world.full_sync()
    set_password(dovecot, mailbox.login, "changed-on-the-server")
    opened = world.ctx.mailboxes

    def open_after_a_save(account_id):
        save_account(world)  # after the run read the account's write_date, before its login fails
        return opened(account_id)

    world.ctx.mailboxes = open_after_a_save
    try:
        world.sync()
        assert account_state(world)[0] == "ok", "a run that started before the save overwrote it"
    finally:
        set_password(dovecot, mailbox.login, mailbox.password)
    world.ctx.mailboxes = opened
    world.sync()
    assert account_state(world) == ("ok", 0, None, None)
    assert world.assert_index_matches_server() == 10
