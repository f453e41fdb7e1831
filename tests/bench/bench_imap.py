"""IMAP sync benchmarks (issue 6). Prints figures; asserts nothing.

    ./scripts/bench                               # 10,000 messages, 20 accounts x 2,000
    ./scripts/bench --big 1000000                 # also the 1,000,000-message figures (minutes)
    python -m tests.bench.bench_imap --help       # with PG* set, or a throwaway cluster is started

Everything is real: Dovecot from the test harness, PostgreSQL (PG* or a
throwaway cluster) with the engine's schema and indexes, the production
use cases, adapter and repositories. Only the Odoo ports are stand-ins: a
no-op after-upsert hook (Basic's is a no-op too) and a lease transaction on
one kept connection (Odoo takes lease cursors from its pool).

For each size (``--messages``, and ``--big`` when asked) one INBOX is
seeded once and looked at through three Dovecot profiles in turn, on the
same mail store: QRESYNC (full Dovecot), CONDSTORE (QRESYNC hidden) and
neither (the harness's BASIC_CAPABILITIES). Figures:

- bootstrap + backfill as the crons run them (``--cron-budget`` per call), in
  a fresh process (peak RSS growth from ru_maxrss), against a raw IMAPClient
  UID FETCH of the same items (METADATA_ITEMS + MODSEQ) in the same chunks;
- a no-change pass on the folder (the use case on an open mailbox, and a
  whole account run with login and LIST), per profile; without CONDSTORE the
  pass is a budgeted, resumable flag scan: per-call time and calls per scan;
- 1,000 flag changes made by another client (one UID STORE), then the pass
  that brings them into the index, checked against the index;
- the periodic full reconciliation (heal pass), forced, as cron calls;
- two cron worker processes against one on ``--accounts`` accounts.
"""

import argparse
import contextlib
import cProfile
import io
import json
import logging
import os
import pstats
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid

from imapclient import IMAPClient

from maildesk_mail_client.application.ports import SyncSettings
from maildesk_mail_client.application.use_cases import backfill, bootstrap_account, sync_account
from maildesk_mail_client.application.use_cases.account_run import run_on_account
from maildesk_mail_client.application.use_cases.sync_folder import sync_folder
from maildesk_mail_client.orm.engine_context import lease_holder
from maildesk_mail_client.providers.imap.mailbox import ImapMailbox
from maildesk_mail_client.providers.imap.metadata import METADATA_ITEMS
from maildesk_mail_client.repositories import AccountLeaseRepository, AccountRepository
from maildesk_mail_client.repositories.lease_holders import is_dead_local_holder
from maildesk_mail_client.repositories.message_index import create_indexes

from ..harness import postgres
from ..harness.dovecot import BASIC_CAPABILITIES, DovecotServer, ImapAccount
from ..harness.sync_world import SyncWorld, imap_config

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SCHEMA = os.path.join(REPO, "tests", "harness", "schema.sql")

#: What the adapter asks for on a CONDSTORE server (session.py: fetch_items(condstore=True)).
RAW_ITEMS = [*METADATA_ITEMS, "MODSEQ"]
SETTINGS = SyncSettings()
FLAGGED = b"\\Flagged"

GOALS = {
    "index_throughput_ratio": ">= 0.8",
    "index_peak_rss_growth_mb": "<= 150 MB",
    "qresync.no_change_folder_pass_ms_median": "<= 2 ms",
    "condstore.no_change_folder_pass_ms_median": "<= 2 ms",
    "neither.no_change_scan1_call_ms_max": "<= budget (+ one window)",
    "condstore.flags_1000_folder_pass_ms_median": "<= 100 ms",
    "workers.speedup_2_vs_1": ">= 1.7",
    "workers.failed_jobs": "0",
    "workers.doubled_rows": "0",
}

_logger = logging.getLogger("maildesk.bench")


# -- infrastructure -----------------------------------------------------------------


class NullHooks:
    """Basic's after-upsert hook does nothing; the harness's recorder would keep every row in memory."""

    def after_upsert(self, account_id, folder_id, rows):
        pass


def kept_connection_leases(connect):
    """Leases on one kept connection, a short transaction per call, as Odoo's cursor pool gives them.

    (The harness opens a new connection per lease call; that costs a
    PostgreSQL backend start at every checkpoint, which Odoo does not pay.)
    """
    conn = connect()

    @contextlib.contextmanager
    def transaction():
        try:
            with conn.cursor() as cr:
                yield cr
        except BaseException:
            conn.rollback()
            raise
        conn.commit()

    return AccountLeaseRepository(transaction, is_dead=is_dead_local_holder)


def bench_context(world):
    world.ctx.hooks = NullHooks()
    world.ctx.leases = kept_connection_leases(world.connect)
    return world


class Database:
    """One database with the engine's schema and indexes on the bench's PostgreSQL."""

    def __init__(self, server):
        self.server = server
        self.name = f"maildesk_bench_{uuid.uuid4().hex[:8]}"
        admin = postgres.connect(server, "postgres", autocommit=True)
        admin.cursor().execute(f'CREATE DATABASE "{self.name}"')
        admin.close()
        conn = self.connect(autocommit=True)
        with conn.cursor() as cr, open(SCHEMA) as schema:
            cr.execute(schema.read())
            create_indexes(cr)  # as pg_fixtures and the Odoo model do: the UID and inbox indexes
        conn.close()

    def connect(self, autocommit=False):
        return postgres.connect(self.server, self.name, autocommit=autocommit)

    def drop(self):
        admin = postgres.connect(self.server, "postgres", autocommit=True)
        admin.cursor().execute(f'DROP DATABASE IF EXISTS "{self.name}" WITH (FORCE)')
        admin.close()


@contextlib.contextmanager
def pg_server():
    env = postgres.server_from_env()
    cluster = None
    if env is None:
        cluster = postgres.ThrowawayCluster()
        env = cluster.start()
    postgres.wait_ready(env)
    try:
        yield env
    finally:
        if cluster:
            cluster.stop()


def _process_cpu_s(pid):
    """User + system CPU of a process and of the children it reaped (Dovecot's imap processes,
    PostgreSQL's backends), in seconds; None when unreadable."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as stat:
            fields = stat.read().rsplit(b")", 1)[1].split()
    except (OSError, TypeError):
        return None
    ticks = os.sysconf("SC_CLK_TCK")
    return sum(int(value) for value in fields[11:15]) / ticks  # utime stime cutime cstime


def _postmaster_pid(pg):
    """PostgreSQL's postmaster on this host (its reaped backends carry the server's CPU), or None."""
    with contextlib.suppress(Exception):
        conn = postgres.connect(pg, "postgres", autocommit=True)
        try:
            with conn.cursor() as cr:
                cr.execute("SHOW data_directory")
                directory = cr.fetchone()[0]
        finally:
            conn.close()
        with open(os.path.join(directory, "postmaster.pid")) as pid:
            return int(pid.readline())
    return None


class MachineCpu:
    """Busy cores of the whole machine (/proc/stat) and the load average over a phase: the bench
    shares its cores with Dovecot, PostgreSQL and whatever else runs here."""

    def __init__(self):
        self.started, self.busy = time.perf_counter(), self._busy()

    @staticmethod
    def _busy():
        with contextlib.suppress(OSError), open("/proc/stat") as stat:
            values = [int(v) for v in stat.readline().split()[1:]]
            return (sum(values) - values[3] - values[4]) / os.sysconf("SC_CLK_TCK")  # minus idle, iowait
        return None

    def report(self):
        busy, wall = self._busy(), time.perf_counter() - self.started
        cores = f"{(busy - self.busy) / wall:.2f}" if busy is not None and self.busy is not None else "?"
        return f"{cores} of {os.cpu_count()} (load {os.getloadavg()[0]:.1f})"


def _ms(seconds):
    return round(1000 * seconds, 2)


def _summary(prefix, seconds, figures):
    seconds = sorted(seconds)
    figures[f"{prefix}_ms_median"] = _ms(statistics.median(seconds))
    figures[f"{prefix}_ms_max"] = _ms(seconds[-1])


def _profile_text(profile, limit=25):
    out = io.StringIO()
    pstats.Stats(profile, stream=out).sort_stats("tottime").print_stats(limit)
    return out.getvalue()


class BenchDovecot(DovecotServer):
    """The harness's Dovecot, with room for a million-message mailbox: with the default
    ``default_vsz_limit`` (256 MB) the imap process of a 1M INBOX fails ``mmap`` of its index
    ("Cannot allocate memory") and drops the connection mid-FETCH."""

    def _config(self):
        return super()._config() + "service imap {\n  vsz_limit = 4G\n}\n"


class Profiles:
    """A Dovecot per profile, one at a time, on one mail store (kept across restarts)."""

    def __init__(self):
        self.root = tempfile.mkdtemp(prefix="maildesk-bench-dovecot-")
        self.server = None
        self.server_port = None
        self.profile = None
        self._condstore_only = None

    def start(self, profile):
        self.stop()
        capabilities = {"qresync": None, "condstore": self._condstore_only, "neither": BASIC_CAPABILITIES}[profile]
        # The same port each time: the mailbox's identity (imap://login@host:port) must not change.
        port = self.server_port if self.profile else None
        self.server = BenchDovecot(capabilities=capabilities, tls=False, root=self.root, port=port).start()
        self.server_port = self.server.port
        self.profile = profile
        if profile == "qresync" and self._condstore_only is None:
            offered = self.server.effective_capabilities()
            self._condstore_only = " ".join(sorted(c for c in offered if c != "QRESYNC"))
        return self.server

    def account(self, login, password="secret"):
        return ImapAccount(self.server.host, self.server.port, login, password)

    def stop(self):
        if self.server is not None:
            self.server.stop()
            self.server = None

    def close(self):
        self.stop()
        shutil.rmtree(self.root, ignore_errors=True)


# -- raw imapclient and seeding -------------------------------------------------------


def seed(server, mailbox, count, timeout, figures, prefix):
    """MULTIAPPEND in slices, so a seed that is too slow stops with its rate known."""
    started = time.perf_counter()
    done, step = 0, 50_000
    while done < count:
        size = min(step, count - done)
        server.seed(mailbox, count=size, start=done + 1)
        done += size
        if time.perf_counter() - started > timeout and done < count:
            break
    elapsed = time.perf_counter() - started
    figures[f"{prefix}seed_s"] = round(elapsed, 1)
    figures[f"{prefix}seed_rate_msg_per_s"] = round(done / elapsed)
    figures[f"{prefix}seeded"] = done
    return done


def raw_fetch(mailbox, chunk, limit_s=None):
    """A plain IMAPClient: UID FETCH of the adapter's items, ``chunk`` UIDs per command."""
    client = IMAPClient(mailbox.host, port=mailbox.port, ssl=False, timeout=60)
    client.login(mailbox.login, mailbox.password)
    client.enable("CONDSTORE")
    uidnext = client.select_folder("INBOX", readonly=True)[b"UIDNEXT"]
    started = time.perf_counter()
    fetched = 0
    for low in range(1, uidnext, chunk):
        fetched += len(client.fetch(list(range(low, min(low + chunk, uidnext))), RAW_ITEMS))
        if limit_s and time.perf_counter() - started > limit_s:
            break
    elapsed = time.perf_counter() - started
    client.logout()
    return fetched, elapsed


def raw_select_ms(mailbox, rounds=20):
    """The floor of a no-change pass: one EXAMINE on an open plain IMAPClient."""
    client = IMAPClient(mailbox.host, port=mailbox.port, ssl=False, timeout=60)
    client.login(mailbox.login, mailbox.password)
    with contextlib.suppress(Exception):
        client.enable("CONDSTORE", "QRESYNC")
    timings = []
    for _ in range(rounds):
        started = time.perf_counter()
        client.select_folder("INBOX", readonly=True)
        timings.append(time.perf_counter() - started)
    client.logout()
    return _ms(statistics.median(timings))


# -- child processes -------------------------------------------------------------------


def _run_child(spec, stdin=None):
    """``spec`` in a fresh interpreter; returns the JSON it prints last."""
    command = [sys.executable, "-m", "tests.bench.bench_imap", "--child", json.dumps(spec)]
    return subprocess.Popen(command, cwd=REPO, env={**os.environ, "PYTHONPATH": REPO},
                            stdin=subprocess.PIPE if stdin else None, stdout=subprocess.PIPE, text=True)


def _child_result(process):
    out, _err = process.communicate()
    for line in reversed(out.splitlines()):
        if line.startswith("CHILD_JSON "):
            return json.loads(line[len("CHILD_JSON "):])
    raise RuntimeError(f"bench child failed (exit {process.returncode}): {out[-2000:]}")


def _unfinished(world):
    """Folders of the account still bootstrapping or with history left, and the account's error
    (a failed run backs the account off, which hides its folders from the backfill claim)."""
    cr = world.conn.cursor()
    cr.execute("""SELECT count(*) FROM maildesk_folder WHERE account_id = %s AND selectable
                     AND (sync_state <> 'incremental' OR backfill_state <> 'done')""", [world.account_id])
    folders = cr.fetchone()[0]
    cr.execute("SELECT folders_synced_at IS NULL, last_error, backoff_until FROM mailbox_account WHERE id = %s",
               [world.account_id])
    never_listed, error, backoff = cr.fetchone()
    world.conn.commit()
    return folders or never_listed, error if backoff else None


def child_index(spec):
    """Bootstrap then backfill one account as the crons do, one budgeted call after another.

    In its own process, so ru_maxrss before/after is this work's peak RSS growth. A run that
    fails puts the account in backoff; the cron would try again after it, the bench at once
    (and counts it).
    """
    db = spec["db"]

    def connect():
        return postgres.connect(spec["pg"], db)

    mailbox = ImapAccount(**spec["mailbox"])
    world = bench_context(SyncWorld(connect, mailbox, SETTINGS))
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    budget, limit = spec["budget"], spec.get("limit_s")
    profile = cProfile.Profile() if spec.get("profile") else None
    calls, errors = {"bootstrap": 0, "backfill": 0}, []
    complete, first_50, idle = False, None, 0
    started = time.perf_counter()
    if profile:
        profile.enable()
    while not (limit and time.perf_counter() - started > limit) and len(errors) <= 10:
        unfinished, error = _unfinished(world)
        if error:
            errors.append(error)
            world.conn.cursor().execute("UPDATE mailbox_account SET backoff_until = NULL WHERE id = %s",
                                        [world.account_id])
            world.conn.commit()
        if not unfinished:
            complete = True
            break
        bootstrapping = world.ctx.accounts.due_for_bootstrap("imap")
        world.conn.commit()
        if bootstrapping:
            bootstrap_account(world.ctx, world.account_id, time.monotonic() + budget)
            calls["bootstrap"] += 1
            first_50 = first_50 or time.perf_counter() - started
        else:
            visited, _indexed, _pending = backfill(world.ctx, time.monotonic() + budget)
            calls["backfill"] += 1
            idle = 0 if visited else idle + 1
            if idle >= 3:  # nothing to claim, nothing due (e.g. the account needs a reconnect)
                break
    elapsed = time.perf_counter() - started
    if profile:
        profile.disable()
        profile.dump_stats(spec["profile"])
    after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    cr = world.conn.cursor()
    cr.execute("SELECT count(*) FROM maildesk_message_index WHERE account_id = %s", [world.account_id])
    indexed = cr.fetchone()[0]
    world.conn.commit()
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return {
        "account_id": world.account_id, "indexed": indexed, "elapsed": elapsed, "complete": complete,
        "first_50_s": first_50 or 0, "calls": calls, "rss_before_mb": before / 1024, "rss_after_mb": after / 1024,
        "cpu_s": usage.ru_utime + usage.ru_stime, "errors": errors,
    }


class _Counter(logging.Handler):
    def __init__(self):
        super().__init__(logging.INFO)
        self.counts = {}

    def emit(self, record):
        message = record.getMessage()
        for key, marker in (("unexpected_errors", "unexpected error"), ("conflicts", "concurrent update"),
                            ("sync_failures", "sync failed"), ("lease_lost", "lease lost")):
            if marker in message:
                self.counts[key] = self.counts.get(key, 0) + 1


def child_cron_worker(spec):
    """One cron worker: bootstrap and backfill cron calls, as Odoo's, until no account has work left."""
    counter = _Counter()
    engine_log = logging.getLogger("maildesk_mail_client")
    engine_log.addHandler(counter)
    engine_log.setLevel(logging.INFO)  # counted above; only warnings reach stderr (child_main)

    def connect():
        return postgres.connect(spec["pg"], spec["db"])

    mailboxes = {int(k): ImapAccount(**v) for k, v in spec["accounts"].items()}
    first = next(iter(mailboxes))
    world = bench_context(SyncWorld(connect, mailboxes[first], SETTINGS, holder=lease_holder(), account_id=first))
    world.ctx.mailboxes = lambda account_id: ImapMailbox.open_account(imap_config(mailboxes[account_id]),
                                                                    SETTINGS.search_window)
    ctx, accounts = world.ctx, AccountRepository(world.conn.cursor())
    stats = {"failed_jobs": 0, "bootstrap_runs": 0, "busy_skips": 0, "backfill_calls": 0, "idle_rounds": 0,
             "messages_backfilled": 0}
    print("READY", flush=True)
    sys.stdin.readline()  # the start signal: every worker is imported and connected
    started = time.perf_counter()
    while True:
        did = 0
        # The bootstrap cron's call: every due account, each under its lease, within the budget.
        deadline = time.monotonic() + spec["budget"]
        try:
            due = accounts.due_for_bootstrap("imap")
            world.conn.commit()
        except Exception:
            stats["failed_jobs"] += 1
            world.conn.rollback()
            due = []
        for account_id in due:
            if time.monotonic() >= deadline:
                break
            try:
                report = bootstrap_account(ctx, account_id, deadline)
            except Exception:  # a job that failed: Odoo would log it and roll back
                _logger.exception("bootstrap job failed")
                stats["failed_jobs"] += 1
                world.conn.rollback()
                continue
            if report is None:
                stats["busy_skips"] += 1
            else:
                stats["bootstrap_runs"] += 1
                did += 1
        # The backfill cron's call.
        try:
            visited, indexed, pending = backfill(ctx, time.monotonic() + spec["budget"])
            stats["backfill_calls"] += 1
            stats["messages_backfilled"] += indexed
            did += visited
        except Exception:
            _logger.exception("backfill job failed")
            stats["failed_jobs"] += 1
            world.conn.rollback()
            pending = 1
        if not due and not pending:
            break
        if not did:
            stats["idle_rounds"] += 1
            time.sleep(0.02)  # the other worker holds what is left
    stats["elapsed"] = time.perf_counter() - started
    usage = resource.getrusage(resource.RUSAGE_SELF)
    stats["cpu_s"] = usage.ru_utime + usage.ru_stime
    stats.update(counter.counts)
    world.conn.close()
    return stats


def child_main(raw):
    _log_warnings()
    spec = json.loads(raw)
    result = {"index": child_index, "cron_worker": child_cron_worker}[spec["kind"]](spec)
    print("CHILD_JSON " + json.dumps(result), flush=True)


# -- figures ---------------------------------------------------------------------------


def _world(db, mailbox, account_id):
    return bench_context(SyncWorld(db.connect, mailbox, SETTINGS, account_id=account_id))


def _inbox(world):
    return next(f for f in world.ctx.folders.list_for_account(world.account_id) if f.is_inbox)


def folder_passes(world, rounds, budget, folder_id=None):
    """``rounds`` calls of sync_folder on one open mailbox (no login, no LIST), each with a
    ``budget`` deadline and its commit; returns [(seconds, finished)]."""
    results = []

    def work(run):
        folder = run.ctx.folders.get(folder_id) if folder_id else _inbox(world)
        for _ in range(rounds):
            started = time.perf_counter()
            finished = sync_folder(run, folder, time.monotonic() + budget)
            run.ctx.checkpoint.commit()
            results.append((time.perf_counter() - started, finished))

    run_on_account(world.ctx, world.account_id, work)
    return results


def passes_until_done(world, budget, limit_s=None, profile=None):
    """Cron-like calls of one folder pass (on an open mailbox, each with a ``budget`` deadline and
    its commit) until one finishes, or ``limit_s`` is spent: (call times, finished, folder after)."""
    times, finished = [], [False]

    def work(run):
        folder = _inbox(world)
        started = time.perf_counter()
        while not (limit_s and time.perf_counter() - started > limit_s):
            began = time.perf_counter()
            done = sync_folder(run, folder, time.monotonic() + budget)
            run.ctx.checkpoint.commit()
            times.append(time.perf_counter() - began)
            if done:
                finished[0] = True
                return

    if profile:
        profile.enable()
    run_on_account(world.ctx, world.account_id, work)
    if profile:
        profile.disable()
    return times, finished[0], _inbox(world)


def _scan_figures(times, finished, folder, size, figures, prefix):
    """Calls and seconds of a full scan; extrapolated from the UIDs covered when it was cut short."""
    if finished:
        calls, seconds = len(times), sum(times)
    else:
        covered = int(folder.reconcile_cursor or folder.low_uid) - folder.low_uid
        share = max(covered, 1) / max(folder.last_uid - folder.low_uid + 1, 1)
        calls, seconds = -(-len(times) // share) if share else None, sum(times) / share
        figures[f"{prefix}_extrapolated_from_calls"] = len(times)
    figures[f"{prefix}_calls"] = int(calls)
    figures[f"{prefix}_s"] = round(seconds, 1)
    figures[f"{prefix}_msgs_per_s"] = round(size / seconds)
    _summary(f"{prefix}_call", times, figures)


def account_run_ms(world, rounds=5, budget=60):
    timings = []
    for _ in range(rounds):
        started = time.perf_counter()
        sync_account(world.ctx, world.account_id, time.monotonic() + budget)
        timings.append(time.perf_counter() - started)
    return _ms(statistics.median(timings))


def settle(world):
    """Incremental passes until the folder is steady (cursors stored, no reconciliation running)."""
    for _ in range(1000):
        report = sync_account(world.ctx, world.account_id, time.monotonic() + 60)
        if report is not None and not report.remaining and _inbox(world).reconcile_cursor is None:
            return
    raise RuntimeError("the folder never settled")


def index_flags(world, uids):
    cr = world.conn.cursor()
    cr.execute(
        """
        SELECT count(*) FILTER (WHERE i.is_flagged) FROM maildesk_message_index i
          JOIN maildesk_folder f ON f.id = i.folder_id
         WHERE f.account_id = %s AND f.role = 'inbox' AND NOT i.deleted_on_server AND i.uid = ANY(%s)
        """,
        [world.account_id, uids],
    )
    flagged = cr.fetchone()[0]
    world.conn.commit()
    return flagged


def bench_flag_changes(world, mailbox, count, rounds, figures, prefix, profile=None):
    """Another client flags (then unflags) ``count`` messages with one UID STORE; the engine's pass
    brings them in. Timed: the folder pass on an open mailbox, and a whole account run."""
    other = mailbox.client(timeout=120)
    other.select_folder("INBOX")
    uidnext = other.folder_status("INBOX", [b"UIDNEXT"])[b"UIDNEXT"]
    step = max((uidnext - 1) // count, 1)
    uids = list(range(1, uidnext, step))[:count]
    folder_ms, account_ms, correct = [], [], True
    for round_ in range(rounds):
        flag = round_ % 2 == 0
        (other.add_flags if flag else other.remove_flags)(uids, [FLAGGED], silent=True)
        other.noop()
        if round_ % 4 < 2:
            if profile:
                profile.enable()
            elapsed, finished = folder_passes(world, 1, 60)[0]
            if profile:
                profile.disable()
            folder_ms.append(elapsed)
        else:
            started = time.perf_counter()
            sync_account(world.ctx, world.account_id, time.monotonic() + 60)
            account_ms.append(time.perf_counter() - started)
        correct &= index_flags(world, uids) == (len(uids) if flag else 0)
    other.logout()
    _summary(f"{prefix}flags_{count}_folder_pass", folder_ms, figures)
    if account_ms:
        figures[f"{prefix}flags_{count}_account_run_ms_median"] = _ms(statistics.median(account_ms))
    figures[f"{prefix}flags_{count}_index_correct"] = correct


def bench_no_change(world, mailbox, rounds, figures, prefix):
    timings = [seconds for seconds, _finished in folder_passes(world, rounds, 60)]
    _summary(f"{prefix}no_change_folder_pass", timings, figures)
    figures[f"{prefix}no_change_raw_examine_ms"] = raw_select_ms(mailbox)
    figures[f"{prefix}no_change_account_run_ms"] = account_run_ms(world)


def bench_no_change_neither(world, budget, limit_s, size, figures, prefix):
    """Without CONDSTORE every pass is a flag scan, budgeted and resumed at reconcile_cursor."""
    figures[f"{prefix}no_change_budget_s"] = budget
    for scan in (1, 2) if size <= 100_000 else (1,):
        times, finished, folder = passes_until_done(world, budget, limit_s)
        _scan_figures(times, finished, folder, size, figures, f"{prefix}no_change_scan{scan}")
        if not finished:
            break


def bench_reconcile(world, budget, limit_s, size, figures, prefix, profile=None):
    """The periodic heal pass, forced: reconciled_at cleared, then cron calls until it ends."""
    cr = world.conn.cursor()
    cr.execute("UPDATE maildesk_folder SET reconciled_at = NULL WHERE account_id = %s AND role = 'inbox'",
               [world.account_id])
    world.conn.commit()
    times, finished, folder = passes_until_done(world, budget, limit_s, profile)
    _scan_figures(times, finished, folder, size, figures, f"{prefix}reconcile")
    if not finished:  # leave it finished, so the next profile starts from a steady folder
        passes_until_done(world, 3600)


def index_equals_server(world, mailbox, window=5000):
    """The index's live rows and flags of every folder equal Dovecot's, compared a UID window at a
    time (a SEARCH ALL of a million UIDs would not fit imaplib's line limit). Also: doubled keys."""
    client = mailbox.client(timeout=120)
    problems = []
    try:
        for folder in world.ctx.folders.list_for_account(world.account_id):
            if not folder.selectable:
                continue
            uidnext = client.select_folder(folder.path, readonly=True)[b"UIDNEXT"]
            for low in range(1, uidnext, window):
                high = min(low + window - 1, uidnext - 1)
                found = client.fetch(list(range(low, high + 1)), ["FLAGS"])
                server = {uid: tuple(name in item[b"FLAGS"] for name in (b"\\Seen", FLAGGED, b"\\Answered",
                                                                           b"\\Draft"))
                          for uid, item in found.items()}
                cr = world.conn.cursor()
                cr.execute("""SELECT uid, is_seen, is_flagged, is_answered, is_draft FROM maildesk_message_index
                               WHERE folder_id = %s AND uid BETWEEN %s AND %s AND NOT deleted_on_server""",
                           [folder.id, low, high])
                index = {uid: tuple(flags) for uid, *flags in cr.fetchall()}
                world.conn.commit()
                if index != server:
                    problems.append(f"{folder.path} {low}:{high}: {len(server)} on the server, {len(index)} "
                                    f"indexed, {sum(index.get(u) != f for u, f in server.items())} differ")
        cr = world.conn.cursor()
        cr.execute("SELECT count(*) - count(DISTINCT delivery_key) FROM maildesk_message_index WHERE account_id = %s",
                   [world.account_id])
        doubled = cr.fetchone()[0]
        world.conn.commit()
    finally:
        client.logout()
    if doubled:
        problems.append(f"{doubled} doubled delivery keys")
    if problems:
        _logger.warning("index != server: %s", "; ".join(problems[:5]))
    return not problems


def bench_size(pg, count, args, figures, label):
    """Every per-folder figure for one INBOX of ``count`` messages; returns the profiles taken."""
    prefix, big = f"{label}.", count > 100_000
    profiles, db, taken = Profiles(), Database(pg), {}
    limit = args.scan_limit_s if big else None
    try:
        server = profiles.start("qresync")
        mailbox = server.add_user()
        for path in ("Sent", "Archive"):
            server.seed(mailbox, folder=path, count=20)
        count = seed(server, mailbox, count, args.seed_timeout, figures, prefix)
        chunk = SETTINGS.chunk

        # Bootstrap + backfill against a raw fetch of the same items. The raw fetch runs before
        # (Dovecot reads every message the first time) and after; the ratio is to the one after.
        raw_limit = args.raw_limit_s if big else None
        fetched, elapsed = raw_fetch(mailbox, chunk, raw_limit)
        figures[f"{prefix}raw_fetch_before_msg_per_s"] = round(fetched / elapsed)
        path = os.path.join(tempfile.gettempdir(), f"maildesk-bench-{label}-{os.getpid()}.prof")
        spec = {"kind": "index", "pg": pg, "db": db.name, "budget": args.cron_budget,
                "profile": path if args.cprofile else None, "limit_s": args.index_timeout,
                "mailbox": {"host": mailbox.host, "port": mailbox.port, "login": mailbox.login,
                            "password": mailbox.password}}
        cpu = (_process_cpu_s(server._process.pid), _process_cpu_s(_postmaster_pid(pg)))
        machine = MachineCpu()
        result = _child_result(_run_child(spec))
        figures[f"{prefix}index_machine_busy_cores"] = machine.report()
        cpu = [(after or 0) - (before or 0) for before, after in
               zip(cpu, (_process_cpu_s(server._process.pid), _process_cpu_s(_postmaster_pid(pg))), strict=True)]
        fetched, elapsed = raw_fetch(mailbox, chunk, raw_limit)
        raw_rate, engine_rate = fetched / elapsed, result["indexed"] / result["elapsed"]
        figures[f"{prefix}raw_fetch_after_msg_per_s"] = round(raw_rate)
        if raw_limit:
            figures[f"{prefix}raw_fetch_after_msgs_timed"] = fetched
        figures[f"{prefix}index_msgs"] = result["indexed"]
        figures[f"{prefix}index_complete"] = result["complete"]
        figures[f"{prefix}index_failed_runs"] = len(result["errors"])
        if result["errors"]:
            figures[f"{prefix}index_first_error"] = result["errors"][0][:160]
        figures[f"{prefix}index_s"] = round(result["elapsed"], 1)
        figures[f"{prefix}index_first_50_s"] = round(result["first_50_s"], 3)
        figures[f"{prefix}index_cron_calls_bootstrap+backfill"] = "{bootstrap}+{backfill}".format(**result["calls"])
        figures[f"{prefix}index_engine_msg_per_s"] = round(engine_rate)
        figures[f"{prefix}index_throughput_ratio"] = round(engine_rate / raw_rate, 2)
        figures[f"{prefix}index_throughput_ratio_to_raw_before"] = round(
            engine_rate / figures[f"{prefix}raw_fetch_before_msg_per_s"], 2)
        figures[f"{prefix}index_peak_rss_growth_mb"] = round(result["rss_after_mb"] - result["rss_before_mb"], 1)
        figures[f"{prefix}index_cpu_s_engine/dovecot/pg"] = f"{result['cpu_s']:.1f}/{cpu[0]:.1f}/{cpu[1]:.1f}"
        if args.cprofile:
            taken["bootstrap + backfill (engine process, main thread)"] = path
        if not result["complete"]:
            return taken
        world = _world(db, mailbox, result["account_id"])
        figures[f"{prefix}index_equals_server"] = index_equals_server(world, mailbox)
        rounds = 4 if not big else 2

        # QRESYNC: the full Dovecot.
        settle(world)
        bench_no_change(world, mailbox, args.rounds, figures, prefix + "qresync.")
        bench_flag_changes(world, mailbox, 1000, rounds, figures, prefix + "qresync.")
        profile = cProfile.Profile() if args.cprofile else None
        bench_reconcile(world, args.cron_budget, limit, count, figures, prefix + "qresync.", profile)
        if profile:
            taken["full reconciliation (QRESYNC)"] = profile
        figures[f"{prefix}qresync.index_equals_server"] = index_equals_server(world, mailbox)

        # CONDSTORE: QRESYNC hidden.
        profiles.start("condstore")
        world.mailbox = mailbox = profiles.account(mailbox.login)
        settle(world)
        bench_no_change(world, mailbox, args.rounds, figures, prefix + "condstore.")
        profile = cProfile.Profile() if args.cprofile else None
        bench_flag_changes(world, mailbox, 1000, rounds, figures, prefix + "condstore.", profile)
        if profile:
            taken["1,000 flag changes (CONDSTORE)"] = profile
        figures[f"{prefix}condstore.index_equals_server"] = index_equals_server(world, mailbox)

        # Neither: every pass is a budgeted flag scan, resumed where the last call stopped.
        profiles.start("neither")
        world.mailbox = mailbox = profiles.account(mailbox.login)
        bench_no_change_neither(world, args.cron_budget, limit, count, figures, prefix + "neither.")
        # One cron call (login, LIST, every folder) under the budget.
        figures[f"{prefix}neither.no_change_account_run_ms"] = account_run_ms(world, 1, args.cron_budget)
        figures[f"{prefix}neither.index_equals_server"] = index_equals_server(world, mailbox)
        world.conn.close()
    finally:
        profiles.close()
        db.drop()
    return taken


def bench_workers(pg, args, figures):
    """``--accounts`` accounts, bootstrap + backfill by one cron worker, then by two."""
    server = BenchDovecot(tls=False).start()
    try:
        mailboxes = [server.add_user() for _ in range(args.accounts)]
        started = time.perf_counter()
        for mailbox in mailboxes:
            server.seed(mailbox, count=args.account_messages)
        figures["workers.seed_s"] = round(time.perf_counter() - started, 1)
        for mailbox in mailboxes:  # Dovecot reads every message once, so neither phase pays it
            raw_fetch(mailbox, SETTINGS.chunk)
        for workers in (1, 2):
            db = Database(pg)
            try:
                conn = db.connect()
                ids = {}
                with conn.cursor() as cr:
                    for mailbox in mailboxes:
                        cr.execute("INSERT INTO mailbox_account (name, provider) VALUES (%s, 'imap') RETURNING id",
                                   [mailbox.login])
                        ids[cr.fetchone()[0]] = mailbox
                conn.commit()
                spec = {"kind": "cron_worker", "pg": pg, "db": db.name, "budget": args.cron_budget,
                        "accounts": {str(k): {"host": m.host, "port": m.port, "login": m.login,
                                              "password": m.password} for k, m in ids.items()}}
                processes = [_run_child(spec, stdin=True) for _ in range(workers)]
                for process in processes:  # imports and connections, outside the timing
                    if process.stdout.readline().strip() != "READY":
                        raise RuntimeError("a cron worker did not start")
                cpu_before = (_process_cpu_s(server._process.pid), _process_cpu_s(_postmaster_pid(pg)))
                machine = MachineCpu()
                started = time.perf_counter()
                for process in processes:
                    process.stdin.write("go\n")
                    process.stdin.flush()
                results = [_child_result(process) for process in processes]
                wall = time.perf_counter() - started
                cpu_after = (_process_cpu_s(server._process.pid), _process_cpu_s(_postmaster_pid(pg)))
                key = f"workers.{workers}"
                figures[f"{key}_machine_busy_cores"] = machine.report()
                figures[f"{key}_wall_s"] = round(wall, 2)
                figures[f"{key}_msg_per_s"] = round(args.accounts * args.account_messages / wall)
                figures[f"{key}_failed_jobs"] = sum(r["failed_jobs"] for r in results)
                for name in ("busy_skips", "idle_rounds", "conflicts", "unexpected_errors", "sync_failures",
                             "lease_lost"):
                    figures[f"{key}_{name}"] = sum(r.get(name, 0) for r in results)
                figures[f"{key}_cpu_s_workers/dovecot/pg"] = "/".join(
                    f"{value:.1f}" for value in (
                        sum(r["cpu_s"] for r in results),
                        (cpu_after[0] or 0) - (cpu_before[0] or 0),
                        (cpu_after[1] or 0) - (cpu_before[1] or 0)))
                with conn.cursor() as cr:
                    cr.execute("SELECT count(*) - count(DISTINCT delivery_key) FROM maildesk_message_index")
                    figures[f"{key}_doubled_rows"] = cr.fetchone()[0]
                    cr.execute("SELECT count(*) FROM mailbox_account WHERE last_error IS NOT NULL")
                    figures[f"{key}_accounts_with_error"] = cr.fetchone()[0]
                conn.commit()
                equal = 0
                for account_id, mailbox in ids.items():
                    world = SyncWorld(db.connect, mailbox, SETTINGS, account_id=account_id)
                    equal += index_equals_server(world, mailbox)
                    world.conn.close()
                figures[f"{key}_accounts_index_equals_server"] = f"{equal}/{len(ids)}"
                conn.close()
            finally:
                db.drop()
        figures["workers.speedup_2_vs_1"] = round(figures["workers.1_wall_s"] / figures["workers.2_wall_s"], 2)
        figures["workers.failed_jobs"] = figures["workers.2_failed_jobs"]
        figures["workers.doubled_rows"] = figures["workers.2_doubled_rows"]
    finally:
        server.stop()


def _tree_state():
    """The commit measured, and the engine files changed in the work tree (read-only git)."""
    def git(*command):
        return subprocess.run(["git", "--no-optional-locks", *command], cwd=REPO, capture_output=True,
                              text=True, check=False).stdout.strip()

    changed = git("status", "--porcelain", "--", "maildesk_mail_client").splitlines()
    return git("rev-parse", "--short", "HEAD") + (f"+{len(changed)} changed engine files" if changed else "")


def _log_warnings():
    handler = logging.StreamHandler(sys.stderr)
    handler.setLevel(logging.WARNING)
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    logging.getLogger().addHandler(handler)
    logging.getLogger().setLevel(logging.WARNING)


def _goal(name):
    for key, goal in GOALS.items():
        if name == key or name.endswith("." + key):
            return goal
    return ""


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--messages", type=int, default=10_000, help="INBOX size of the per-folder figures; 0: none")
    parser.add_argument("--big", type=int, default=0, help="also run them on this size (e.g. 1000000); 0: not")
    parser.add_argument("--accounts", type=int, default=20, help="accounts of the cron-worker figure; 0 skips it")
    parser.add_argument("--account-messages", type=int, default=2000)
    parser.add_argument("--cron-budget", type=float, default=2.0,
                        help="seconds per cron call (Odoo's default: 1/60 of limit_time_real = 2 s)")
    parser.add_argument("--rounds", type=int, default=50, help="no-change passes timed per profile")
    parser.add_argument("--seed-timeout", type=float, default=600, help="stop seeding after this (seconds)")
    parser.add_argument("--index-timeout", type=float, default=900,
                        help="stop bootstrap+backfill after this (seconds) and report how far it got")
    parser.add_argument("--raw-limit-s", type=float, default=60,
                        help="above 100,000 messages, time each raw fetch on what it reads in this many seconds")
    parser.add_argument("--scan-limit-s", type=float, default=300,
                        help="above 100,000 messages, stop a full scan after this (seconds) and extrapolate")
    parser.add_argument("--cprofile", action="store_true", help="print where the time goes (cProfile)")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        return child_main(args.child)
    _log_warnings()
    figures = {"engine_tree": _tree_state(), "cron_budget_s": args.cron_budget}
    profiles = {}
    started = time.perf_counter()
    with pg_server() as pg:
        sizes = [(size, _label(size)) for size in (args.messages, args.big) if size]
        for count, label in sizes:
            found = bench_size(pg, count, args, figures, label)
            profiles.update({f"{label} {title}": profile for title, profile in found.items()})
            _print(figures, partial=True)
        if args.accounts:
            bench_workers(pg, args, figures)
    figures["bench_wall_s"] = round(time.perf_counter() - started, 1)
    for title, profile in profiles.items():
        print(f"\n--- cProfile: {title} (by own time) ---")
        print(_profile_text(profile))
    _print(figures)


def _label(count):
    if count % 1_000_000 == 0:
        return f"{count // 1_000_000}M"
    return f"{count // 1000}k" if count % 1000 == 0 else str(count)


def _print(figures, partial=False):
    print(f"\nMailDesk IMAP benchmark (engine, real Dovecot + PostgreSQL){' -- so far' if partial else ''}", flush=True)
    for name, value in figures.items():
        if not name.startswith("_"):
            print(f"  {name:<56} {value!s:>14}   {_goal(name)}", flush=True)
    if not partial:
        print("BENCH_JSON " + json.dumps({k: v for k, v in figures.items() if not k.startswith("_")}), flush=True)


if __name__ == "__main__":
    main()
