"""Leases at REPEATABLE READ, the isolation level of Odoo's cursors (issue 6, defect 2).

Every connection of the harness runs at REPEATABLE READ (harness/postgres.py),
as Odoo's do. There, a lost race for a lease must read as "busy", never as an
exception that fails the cron job; and a worker on this host whose process is
gone must not keep its account locked until the lease expires.
"""

import contextlib
import os
import socket
import subprocess
import sys
import threading
import time

import psycopg2.errors
import pytest

from maildesk_mail_client.application.domain import RemoteFolder
from maildesk_mail_client.application.errors import ConnectionFailed
from maildesk_mail_client.application.use_cases import backfill
from maildesk_mail_client.repositories import AccountLeaseRepository, FolderRepository
from maildesk_mail_client.repositories.conflicts import CONFLICTS
from maildesk_mail_client.repositories.lease_holders import (
    is_dead_local_holder,
    parse_holder,
    process_is_gone,
)

from .harness.engine import create_account, lease_transaction, make_context

CONTENDERS = 8
ROUNDS = 30
HOST = socket.gethostname()


def _transaction_on(conn):
    """Lease calls on one long-lived connection, each in a transaction of its own."""

    @contextlib.contextmanager
    def transaction():
        try:
            with conn.cursor() as cr:
                yield cr
            conn.commit()
        except BaseException:
            conn.rollback()
            raise

    return transaction


def _race(workers, rounds, prepare=None, settle=None, timeout=60):
    """Run every ``worker(round)`` at the same instant, ``rounds`` times.

    ``prepare(round)`` runs before a round, ``settle(round, results)`` after
    it, both in this thread. Returns the results per round (one per worker,
    None where it raised) and the exceptions raised.
    """
    go = threading.Barrier(len(workers) + 1, timeout=timeout)
    finished = threading.Barrier(len(workers) + 1, timeout=timeout)
    results = [[None] * len(workers) for _ in range(rounds)]
    errors = []

    def run(index, worker):
        for round_ in range(rounds):
            go.wait()
            try:
                results[round_][index] = worker(round_)
            except Exception as error:
                errors.append(error)
            finished.wait()

    threads = [threading.Thread(target=run, args=(i, w), daemon=True) for i, w in enumerate(workers)]
    for thread in threads:
        thread.start()
    try:
        for round_ in range(rounds):
            if prepare:
                prepare(round_)
            go.wait()
            finished.wait()
            if settle:
                settle(round_, results[round_])
    finally:
        go.abort()
        finished.abort()
        for thread in threads:
            thread.join(timeout)
    return results, errors


def acquire_race(connect, repository=AccountLeaseRepository, contenders=CONTENDERS, rounds=ROUNDS):
    """``contenders`` workers, each on its own connection, race ``acquire`` for one lease.

    The winner releases between rounds. Returns (winners per round, exceptions).
    """
    account_id = create_account(connect())
    names = [f"{HOST}:{os.getpid()}:w{i}" for i in range(contenders)]
    leases = [repository(_transaction_on(connect())) for _ in names]
    admin = repository(_transaction_on(connect()))

    def worker(i):
        return lambda _round: leases[i].acquire(account_id, "sync", names[i], 60)

    def settle(_round, results):
        for name, won in zip(names, results, strict=True):
            if won:
                admin.release(account_id, "sync", name)

    results, errors = _race([worker(i) for i in range(contenders)], rounds, settle=settle)
    winners = [[name for name, won in zip(names, row, strict=True) if won] for row in results]
    return winners, errors


def _dead_pid():
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()  # exited and reaped: no such process any more
    return child.pid


# ---------------------------------------------------------------------------
# The harness runs at REPEATABLE READ; the lease calls at READ COMMITTED
# ---------------------------------------------------------------------------


def test_harness_connections_run_at_repeatable_read(pg_db):
    with pg_db().cursor() as cr:
        cr.execute("SHOW transaction_isolation")
        assert cr.fetchone()[0] == "repeatable read"
    with pg_db(autocommit=True).cursor() as cr:
        cr.execute("SHOW transaction_isolation")
        assert cr.fetchone()[0] == "read committed"  # autocommit: the server's default


def test_each_lease_call_runs_at_read_committed(pg_db):
    """psycopg2 opens with BEGIN ISOLATION LEVEL REPEATABLE READ; the lease's SET TRANSACTION overrides it."""
    conn = pg_db()
    seen = []

    @contextlib.contextmanager
    def transaction():
        with conn.cursor() as cr:
            yield cr
            cr.execute("SHOW transaction_isolation")
            seen.append(cr.fetchone()[0])
        conn.commit()

    account_id = create_account(pg_db())
    leases = AccountLeaseRepository(transaction)
    assert leases.acquire(account_id, "sync", "A", 60)
    assert leases.renew(account_id, "sync", "A", 60)
    assert leases.holder_of(account_id, "sync") == "A"
    assert leases.release(account_id, "sync", "A")
    assert seen == ["read committed"] * 4
    with conn.cursor() as cr:  # the connection itself stays at REPEATABLE READ
        cr.execute("SHOW transaction_isolation")
        assert cr.fetchone()[0] == "repeatable read"


def test_lease_calls_inside_an_open_transaction(pg_db):
    """Under Odoo's test runner a savepoint on the test cursor stands in: no SET TRANSACTION there."""
    conn = pg_db()
    account_id = create_account(conn)
    with conn.cursor() as cr:
        cr.execute("SELECT count(*) FROM mailbox_account")  # the test's transaction has its snapshot

    @contextlib.contextmanager
    def savepoint():
        with conn.cursor() as cr:
            cr.execute("SAVEPOINT lease")
            try:
                yield cr
            except BaseException:
                cr.execute("ROLLBACK TO SAVEPOINT lease")
                raise
            cr.execute("RELEASE SAVEPOINT lease")

    leases = AccountLeaseRepository(savepoint)
    assert leases.acquire(account_id, "sync", "A", 60)
    assert not leases.acquire(account_id, "sync", "B", 60)
    assert leases.renew(account_id, "sync", "A", 60)
    assert leases.release(account_id, "sync", "A")
    assert leases.holder_of(account_id, "sync") is None


# ---------------------------------------------------------------------------
# Races
# ---------------------------------------------------------------------------


def test_acquire_race_at_repeatable_read_has_one_winner_and_no_error(pg_db):
    winners, errors = acquire_race(pg_db)
    assert errors == []
    assert [len(round_) for round_ in winners] == [1] * ROUNDS


def test_renew_racing_expired_lease_takeovers(pg_db):
    """The holder renews an expired lease while 7 others try to take it: exactly one of them wins."""
    account_id = create_account(pg_db())
    admin = AccountLeaseRepository(_transaction_on(pg_db()))
    renewer = AccountLeaseRepository(_transaction_on(pg_db()))
    takers = [AccountLeaseRepository(_transaction_on(pg_db())) for _ in range(CONTENDERS - 1)]
    names = ["R"] + [f"T{i}" for i in range(len(takers))]

    def prepare(_round):
        assert admin.acquire(account_id, "sync", "R", 60)
        assert admin.renew(account_id, "sync", "R", 0)  # R's lease runs out: anyone may take it

    outcomes = []

    def settle(_round, results):
        holder = admin.holder_of(account_id, "sync")
        outcomes.append((results, holder))
        admin.release(account_id, "sync", holder)

    workers = [lambda _r: renewer.renew(account_id, "sync", "R", 60)]
    workers += [lambda _r, t=t, n=n: t.acquire(account_id, "sync", n, 60)
                for t, n in zip(takers, names[1:], strict=True)]
    _results, errors = _race(workers, ROUNDS, prepare=prepare, settle=settle)

    assert errors == []
    for results, holder in outcomes:
        assert results.count(True) == 1, results
        assert holder == names[results.index(True)]
    renewals = sum(results[0] for results, _holder in outcomes)
    print(f"renew won {renewals} of {ROUNDS} rounds, takeovers {ROUNDS - renewals}")


class _Conflicting:
    """A transaction factory whose first ``failures`` transactions raise ``error`` on the statement."""

    def __init__(self, transaction, failures, error=psycopg2.errors.SerializationFailure):
        self.transaction, self.failures, self.error, self.calls = transaction, failures, error, 0

    @contextlib.contextmanager
    def __call__(self):
        self.calls += 1
        with self.transaction() as cr:
            if self.calls <= self.failures:
                raise self.error("could not serialize access due to concurrent update")
            yield cr


@pytest.mark.parametrize("error", [*CONFLICTS, psycopg2.errors.UniqueViolation])
def test_a_conflict_in_acquire_means_busy(pg_db, error):
    account_id = create_account(pg_db())
    assert not AccountLeaseRepository(_Conflicting(lease_transaction(pg_db), 1, error)).acquire(
        account_id, "sync", "A", 60)


def test_renew_retries_a_conflict_once(pg_db):
    account_id = create_account(pg_db())
    assert AccountLeaseRepository(lease_transaction(pg_db)).acquire(account_id, "sync", "A", 60)

    once = _Conflicting(lease_transaction(pg_db), 1)
    assert AccountLeaseRepository(once).renew(account_id, "sync", "A", 60)
    assert once.calls == 2
    twice = _Conflicting(lease_transaction(pg_db), 2)
    assert not AccountLeaseRepository(twice).renew(account_id, "sync", "A", 60)
    assert twice.calls == 2
    deadlock = _Conflicting(lease_transaction(pg_db), 1, psycopg2.errors.DeadlockDetected)
    assert AccountLeaseRepository(deadlock).release(account_id, "sync", "A")


# ---------------------------------------------------------------------------
# A dead holder on this host
# ---------------------------------------------------------------------------


def test_a_dead_holders_lease_is_taken_over(pg_db):
    account_id = create_account(pg_db())
    leases = AccountLeaseRepository(lease_transaction(pg_db))
    dead = f"{HOST}:{_dead_pid()}:deadbeef"
    assert leases.acquire(account_id, "sync", dead, 600)

    me = f"{HOST}:{os.getpid()}:me"
    assert not leases.acquire(account_id, "sync", me, 60)  # without is_dead: busy until it expires
    assert leases.acquire(account_id, "sync", me, 60, is_dead=is_dead_local_holder)
    assert leases.holder_of(account_id, "sync") == me
    assert not leases.renew(account_id, "sync", dead, 600)  # were it alive, it would stop now
    assert leases.take_over_if_dead(account_id, "sync", me, 60, is_dead_local_holder) is False  # ours


@pytest.mark.parametrize("holder", [
    f"{HOST}:{os.getpid()}:alive",  # this very process
    "another-host.invalid:1:x",  # nothing can be known of another host
    "test:abcdef12",  # not host:pid:token
])
def test_a_live_or_unknown_holder_is_not_taken_over(pg_db, holder):
    account_id = create_account(pg_db())
    leases = AccountLeaseRepository(lease_transaction(pg_db))
    assert leases.acquire(account_id, "sync", holder, 600)
    assert not leases.acquire(account_id, "sync", f"{HOST}:{os.getpid()}:me", 60, is_dead=is_dead_local_holder)
    assert leases.holder_of(account_id, "sync") == holder


def test_takeovers_of_a_dead_holder_have_one_winner(pg_db):
    account_id = create_account(pg_db())
    admin = AccountLeaseRepository(_transaction_on(pg_db()))
    leases = [AccountLeaseRepository(_transaction_on(pg_db())) for _ in range(CONTENDERS)]
    names = [f"{HOST}:{os.getpid()}:t{i}" for i in range(CONTENDERS)]
    pid = _dead_pid()
    is_dead_calls = []

    def is_dead(holder):
        is_dead_calls.append(holder)
        return is_dead_local_holder(holder)

    def prepare(round_):
        assert admin.acquire(account_id, "sync", f"{HOST}:{pid}:dead{round_}", 600)

    def settle(_round, results):
        for name, won in zip(names, results, strict=True):
            if won:
                admin.release(account_id, "sync", name)

    workers = [lambda _r, lease=lease, name=name: lease.acquire(account_id, "sync", name, 60, is_dead=is_dead)
               for lease, name in zip(leases, names, strict=True)]
    results, errors = _race(workers, ROUNDS, prepare=prepare, settle=settle)
    assert errors == []
    assert [row.count(True) for row in results] == [1] * ROUNDS
    assert is_dead_calls  # the takeover path did run


def test_parse_holder():
    assert parse_holder("host:123:abcd") == ("host", 123)
    assert parse_holder("my.host.example:42:0a1b2c3d") == ("my.host.example", 42)
    for holder in ("test:abcd", "host:123", "host:x1:abcd", "host:0:abcd", "host:-1:abcd", ":12:ab", "",
                   None, "host:١٢:ab"):
        assert parse_holder(holder) is None, holder


def test_dead_local_holder():
    pid = _dead_pid()
    assert is_dead_local_holder(f"{HOST}:{pid}:x")
    assert not is_dead_local_holder(f"another-host.invalid:{pid}:x")
    assert is_dead_local_holder(f"elsewhere:{pid}:x", hostname="elsewhere")
    assert not is_dead_local_holder(f"{HOST}:{os.getpid()}:x")
    assert not is_dead_local_holder(f"{HOST}:1:x")  # init: alive (even if not ours to signal)
    assert not process_is_gone(0)


@pytest.mark.skipif(not os.path.exists(f"/proc/{os.getpid()}/stat"), reason="needs Linux /proc")
def test_an_exited_unreaped_process_is_dead():
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    try:
        for _ in range(500):  # until it has exited, but is not reaped yet (a zombie)
            with open(f"/proc/{child.pid}/stat", "rb") as stat:
                if b") Z" in stat.read():
                    break
            threading.Event().wait(0.01)
        assert process_is_gone(child.pid)
    finally:
        child.wait()


# ---------------------------------------------------------------------------
# FolderRepository.claim_backfill at REPEATABLE READ (folder.py is not this change's)
# ---------------------------------------------------------------------------


def test_backfill_claim_after_a_concurrent_commit(pg_db):
    """At REPEATABLE READ, FOR UPDATE on a row committed after the snapshot raises; the
    backfill use case therefore claims in a fresh snapshot, and treats a conflict as "not ours"."""
    conn_a, conn_b = pg_db(), pg_db()
    account_id = create_account(conn_a)
    folders_a = FolderRepository(conn_a.cursor())
    state = folders_a.insert(account_id, RemoteFolder("INBOX", "INBOX", "/", "inbox"))
    state.sync_state = "incremental"
    folders_a.save_cursors(state)
    conn_a.commit()

    def stale_snapshot_then_concurrent_touch():
        with conn_a.cursor() as cr:  # A's transaction reads something: its snapshot is taken
            cr.execute("SELECT count(*) FROM mailbox_account")
        FolderRepository(conn_b.cursor()).touch(state.id)  # B: another worker's checkpoint on that folder
        conn_b.commit()

    stale_snapshot_then_concurrent_touch()
    with pytest.raises(psycopg2.errors.SerializationFailure):
        folders_a.claim_backfill(limit=1)
    conn_a.rollback()

    def unreachable(_account_id):
        raise ConnectionFailed("no server in this test")

    ctx = make_context(conn_a, pg_db, unreachable)
    stale_snapshot_then_concurrent_touch()
    visited, indexed, _pending = backfill(ctx, time.monotonic() + 10)
    assert (visited, indexed) == (0, 0)
    cr = conn_a.cursor()
    cr.execute("SELECT failure_count, last_error FROM mailbox_account WHERE id = %s", [account_id])
    failures, error = cr.fetchone()
    assert failures == 1 and "no server" in error, "the folder was claimed and its account's failure recorded"
