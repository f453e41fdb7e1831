"""Ingest (DESIGN §3 flow 4) on a real PostgreSQL at REPEATABLE READ, as Odoo runs it.

The scan and the import are the production use case and repository; the
raw messages come from the body cache (as they do for any message opened
in the inbox), and the importer stands for ``mail.thread.message_process``:
it records the message in ``mail_message`` as Odoo's gateway does. Odoo's
own routing is tested in the Odoo suite (test_ingest.py).
"""

import dataclasses
import datetime as dt
import os
import threading
import time
from email.message import EmailMessage

import pytest

from maildesk_mail_client.application.use_cases.ingest import (
    AliasBook,
    IngestPorts,
    IngestSettings,
    import_pending,
    scan,
)
from maildesk_mail_client.repositories.ingest_queue import IngestQueueRepository, create_indexes

from .harness.engine import ConnectionCheckpoint, UtcClock

SCHEMA = os.path.join(os.path.dirname(__file__), "harness", "ingest_schema.sql")
ALIAS = "jobs@odoo.test"
BOOK = AliasBook(full_names=frozenset({ALIAS}), local_names=frozenset({"support"}),
                 allowed_domains=frozenset({"odoo.test"}))
FAST = IngestSettings(scan_batch=50, settle_seconds=2.0, claim_batch=5)


class ShiftableClock(UtcClock):
    def __init__(self):
        self.offset = dt.timedelta()

    def now(self):
        return super().now() + self.offset


class GatewayStandIn:
    """What ``message_process`` leaves behind: one mail_message row per message it takes.

    ``pause`` widens the window between "is it in Odoo?" and "it is", where a double import
    would happen without the claim and the Message-ID lock. ``refuse`` raises, as Odoo's
    routing does for a message it has no route for.
    """

    def __init__(self, conn, pause=0.0, refuse=None):
        self.cr = conn.cursor()
        self.pause = pause
        self.refuse = refuse
        self.calls = []

    def process(self, raw, message_id):
        if self.refuse:
            raise ValueError(self.refuse)
        time.sleep(self.pause)
        self.calls.append(message_id)
        self.cr.execute("INSERT INTO mail_message (message_id, model, res_id) VALUES (%s, 'crm.lead', 1) "
                        "RETURNING id", [message_id])
        return self.cr.fetchone()[0]


def _no_mailbox(account_id):
    raise AssertionError("every raw message of these tests is in the body cache")


def ports(conn, importer=None, clock=None, settings=FAST, book=BOOK):
    return IngestPorts(queue=IngestQueueRepository(conn.cursor()), aliases=lambda: book, mailboxes=_no_mailbox,
                       importer=importer or GatewayStandIn(conn), checkpoint=ConnectionCheckpoint(conn),
                       clock=clock or UtcClock(), settings=settings)


@pytest.fixture
def world(pg_db):
    conn = pg_db()
    with conn.cursor() as cr, open(SCHEMA) as schema:
        cr.execute(schema.read())
        create_indexes(cr)
    conn.commit()
    return World(pg_db, conn)


class World:
    def __init__(self, connect, conn):
        self.connect = connect
        self.conn = conn
        self.folders = {}

    def account(self, name="acct"):
        with self.conn.cursor() as cr:
            cr.execute("INSERT INTO mailbox_account (name, provider) VALUES (%s, 'imap') RETURNING id", [name])
            account_id = cr.fetchone()[0]
            for path, role in (("INBOX", "inbox"), ("Drafts", "drafts"), ("Junk", "junk"), ("Archive", "archive")):
                cr.execute("INSERT INTO maildesk_folder (account_id, path, remote_id, role) VALUES (%s, %s, %s, %s) "
                           "RETURNING id", [account_id, path, path, role])
                self.folders[account_id, path] = cr.fetchone()[0]
        self.conn.commit()
        return account_id

    def message(self, account_id, number, folder="INBOX", to="someone@example.com", cc=None, in_reply_to=None,
                references=None, message_id=None, conn=None, commit=True, cache=True, **flags):
        conn = conn or self.conn
        message_id = message_id or f"<m{number}@example.com>"
        folder_id = self.folders[account_id, folder]
        with conn.cursor() as cr:
            cr.execute(
                """
                INSERT INTO maildesk_message_index (account_id, folder_id, provider, remote_id, uid, delivery_key,
                    message_id, in_reply_to, references_header, to_addresses, cc_addresses, subject,
                    is_draft, needs_refetch)
                VALUES (%s, %s, 'imap', %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s) RETURNING id
                """,
                [account_id, folder_id, str(number), number, f"{account_id}:imap:{folder_id}:{number}", message_id,
                 in_reply_to, references, to, cc, f"Message {number}", flags.get("is_draft", False),
                 flags.get("needs_refetch", False)])
            index_id = cr.fetchone()[0]
            if cache:
                raw = _raw(message_id, to, number)
                cr.execute("INSERT INTO maildesk_ui_cache (index_id, account_id, raw_message, raw_size, fetched_at, "
                           "expires_at) VALUES (%s, %s, %s, %s, now(), now() + interval '30 days')",
                           [index_id, account_id, raw, len(raw)])
        if commit:
            conn.commit()
        return index_id

    def odoo_sent(self, message_id):
        with self.conn.cursor() as cr:
            cr.execute("INSERT INTO mail_message (message_id, model, res_id) VALUES (%s, 'res.partner', 7)",
                       [message_id])
        self.conn.commit()

    def query(self, sql, params=()):
        with self.conn.cursor() as cr:
            cr.execute(sql, params)
            rows = cr.fetchall()
        self.conn.commit()
        return rows

    def queued(self):
        return {tuple(row) for row in self.query("SELECT account_id, message_id FROM maildesk_ingest_queue")}


def _raw(message_id, to, number):
    msg = EmailMessage()
    msg["From"] = "customer@example.com"
    msg["To"] = to or "someone@example.com"
    msg["Subject"] = f"Message {number}"
    msg["Message-ID"] = message_id
    msg.set_content(f"Body {number}")
    return msg.as_bytes()


def _deadline(seconds=30):
    return time.monotonic() + seconds


# -- scan ------------------------------------------------------------------------------


def test_scan_queues_aliased_mail_and_replies_to_odoo_only(world):
    account = world.account()
    world.odoo_sent("<odoo-sent-1@odoo.test>")
    world.message(account, 1, to=f"Jobs <{ALIAS}>")
    world.message(account, 2, cc="Support <SUPPORT@odoo.test>")  # local-part alias, case-insensitive
    world.message(account, 3, in_reply_to="<odoo-sent-1@odoo.test>")
    world.message(account, 4, references="<elsewhere@x> <odoo-sent-1@odoo.test>")
    world.message(account, 5)  # to nobody Odoo knows
    world.message(account, 6, to="support@other.test")  # local part, but a domain Odoo does not take
    world.message(account, 7, to=ALIAS, folder="Drafts")
    world.message(account, 8, to=ALIAS, folder="Junk")
    world.message(account, 9, to=ALIAS, message_id="<odoo-sent-1@odoo.test>")  # Odoo's own message
    world.message(account, 10, to=ALIAS, folder="Archive", message_id="<m1@example.com>")  # m1 again

    report = scan(ports(world.conn), _deadline())

    assert report.queued == 4
    assert world.queued() == {(account, "<m1@example.com>"), (account, "<m2@example.com>"),
                              (account, "<m3@example.com>"), (account, "<m4@example.com>")}
    # Scanned rows are not read again; a new one is.
    assert scan(ports(world.conn), _deadline()).scanned == 0
    world.message(account, 11, to=ALIAS)
    report = scan(ports(world.conn), _deadline())
    assert (report.scanned, report.queued) == (1, 1)


def test_a_row_committed_after_a_higher_one_is_not_skipped(world):
    account = world.account()
    late = world.connect()
    world.message(account, 1, to=ALIAS, conn=late, commit=False)  # takes its id, commits later
    world.message(account, 2, to=ALIAS)  # a higher id, committed first

    waiting = ports(world.conn, settings=dataclasses.replace(FAST, settle_seconds=0.3))
    report = scan(waiting, _deadline())
    assert report.unsettled and report.queued == 0
    assert world.query("SELECT ingest_scan_mark FROM mailbox_account")[0][0] is None

    late.commit()
    report = scan(ports(world.conn), _deadline())
    assert report.queued == 2


def test_a_row_still_being_described_holds_the_mark_until_it_is_complete(world):
    account = world.account()
    thin = world.message(account, 1, to=None, needs_refetch=True)  # a thin Graph delta row
    world.message(account, 2, to=ALIAS)
    assert scan(ports(world.conn), _deadline()).queued == 1
    assert world.query("SELECT COALESCE(ingest_scan_mark, 0) FROM mailbox_account")[0][0] == thin - 1

    world.query(f"UPDATE maildesk_message_index SET to_addresses = '{ALIAS}', needs_refetch = false "
                "WHERE id = %s RETURNING id", [thin])
    assert scan(ports(world.conn), _deadline()).queued == 1
    assert (account, "<m1@example.com>") in world.queued()


def test_two_scans_at_once_queue_each_message_once(world):
    accounts = [world.account("a"), world.account("b")]
    for number in range(300):
        for account in accounts:
            world.message(account, number, to=ALIAS, commit=False)
    world.conn.commit()

    reports = _together(lambda conn: scan(ports(conn), _deadline()), world.connect, 2)

    assert sum(report.queued for report in reports) == 600
    assert world.query("SELECT count(*), count(DISTINCT (account_id, message_id)) FROM maildesk_ingest_queue")[0] \
        == (600, 600)


# -- import ----------------------------------------------------------------------------


def test_two_workers_scan_and_import_at_once_import_each_message_once(world):
    # The same 150 messages reach two accounts (a shared alias), some in two folders:
    # 300 queue rows, 150 imports, whatever the two workers do at the same time.
    accounts = [world.account("a"), world.account("b")]
    for number in range(150):
        for account in accounts:
            world.message(account, number, to=ALIAS, commit=False)
        if number % 10 == 0:
            world.message(accounts[0], 1000 + number, folder="Archive", to=ALIAS,
                          message_id=f"<m{number}@example.com>", commit=False)
    world.conn.commit()
    gateways = []

    def worker(conn):
        gateway = GatewayStandIn(conn, pause=0.001)
        gateways.append(gateway)
        worker_ports = ports(conn, importer=gateway)
        for _round in range(2):  # each cron twice
            scan(worker_ports, _deadline())
            import_pending(worker_ports, _deadline())

    _together(worker, world.connect, 2)

    assert sum(len(gateway.calls) for gateway in gateways) == 150
    doubled = world.query("SELECT message_id FROM mail_message GROUP BY message_id HAVING count(*) > 1")
    assert doubled == []
    assert world.query("SELECT state, count(*) FROM maildesk_ingest_queue GROUP BY state") == [("done", 300)]
    assert world.query("SELECT count(*) FROM maildesk_ingest_queue WHERE mail_message_id IS NULL")[0][0] == 0


def test_claims_of_two_workers_never_overlap(world):
    account = world.account()
    for number in range(40):
        world.message(account, number, to=ALIAS, commit=False)
    world.conn.commit()
    scan(ports(world.conn), _deadline())
    barrier = threading.Barrier(2)

    def claim(conn):
        repository = IngestQueueRepository(conn.cursor())
        now = UtcClock().now()
        claimed = []
        while True:
            barrier.wait(timeout=10)
            repository.begin()
            items = repository.claim(now, now + dt.timedelta(minutes=10), 3)
            conn.commit()
            claimed.extend(item.id for item in items)
            if not items:
                barrier.abort()
                return claimed

    claims = _together(claim, world.connect, 2, tolerate=threading.BrokenBarrierError)
    everything = [item for claimed in claims if claimed for item in claimed]
    assert len(everything) == len(set(everything)) <= 40


def test_a_failing_import_backs_off_then_fails_with_its_reason_and_requeue_imports_it(world):
    account = world.account()
    world.message(account, 1, to=ALIAS)
    clock = ShiftableClock()
    scan(ports(world.conn, clock=clock), _deadline())
    world.query("UPDATE maildesk_ingest_queue SET max_attempts = 3 RETURNING id")
    refusing = GatewayStandIn(world.conn, refuse="No possible route found for incoming message")

    report = import_pending(ports(world.conn, importer=refusing, clock=clock), _deadline())
    assert report.retried == 1
    (state, attempts, error, due), = world.query(
        "SELECT state, attempts, last_error, next_attempt_at FROM maildesk_ingest_queue")
    assert (state, attempts) == ("pending", 1) and "No possible route" in error
    assert dt.timedelta(seconds=50) < due - clock.now() <= dt.timedelta(seconds=60)
    # Not due yet: nothing happens.
    assert import_pending(ports(world.conn, importer=refusing, clock=clock), _deadline()).handled == 0

    clock.offset += dt.timedelta(seconds=61)
    import_pending(ports(world.conn, importer=refusing, clock=clock), _deadline())
    due = world.query("SELECT next_attempt_at FROM maildesk_ingest_queue")[0][0]
    assert dt.timedelta(seconds=110) < due - clock.now() <= dt.timedelta(seconds=120)  # doubled
    clock.offset += dt.timedelta(seconds=121)
    report = import_pending(ports(world.conn, importer=refusing, clock=clock), _deadline())
    assert report.failed == 1
    assert world.query("SELECT state, attempts, last_error FROM maildesk_ingest_queue")[0] == (
        "failed", 3, "No possible route found for incoming message")
    clock.offset += dt.timedelta(days=1)
    assert import_pending(ports(world.conn, importer=refusing, clock=clock), _deadline()).handled == 0

    queue_id = world.query("SELECT id FROM maildesk_ingest_queue")[0][0]
    IngestQueueRepository(world.conn.cursor()).requeue([queue_id], clock.now())
    world.conn.commit()
    report = import_pending(ports(world.conn, clock=clock), _deadline())
    assert report.imported == 1
    assert world.query("SELECT state, attempts FROM maildesk_ingest_queue")[0] == ("done", 1)


def test_a_row_whose_worker_died_comes_back_after_its_lease_and_fails_at_the_last_attempt(world):
    account = world.account()
    world.message(account, 1, to=ALIAS)
    scan(ports(world.conn), _deadline())
    world.query("UPDATE maildesk_ingest_queue SET max_attempts = 2 RETURNING id")
    clock = ShiftableClock()
    repository = IngestQueueRepository(world.conn.cursor())

    def claim_and_die():
        now = clock.now()
        items = repository.claim(now, now + dt.timedelta(seconds=600), 5)
        world.conn.commit()  # the claim is durable; then the worker is killed
        return items

    assert [item.attempts for item in claim_and_die()] == [1]
    assert claim_and_die() == []  # hidden while its lease runs
    clock.offset += dt.timedelta(seconds=601)
    assert [item.attempts for item in claim_and_die()] == [2]
    clock.offset += dt.timedelta(seconds=601)
    assert claim_and_die() == []
    state, error = world.query("SELECT state, last_error FROM maildesk_ingest_queue")[0]
    assert state == "failed" and "did not finish" in error


def test_a_message_already_in_odoo_is_done_without_an_import(world):
    account = world.account()
    world.message(account, 1, to=ALIAS)
    scan(ports(world.conn), _deadline())
    world.odoo_sent("<m1@example.com>")  # e.g. Odoo's own mail gateway took it meanwhile
    gateway = GatewayStandIn(world.conn)
    report = import_pending(ports(world.conn, importer=gateway), _deadline())
    assert (report.imported, report.already, gateway.calls) == (0, 1, [])
    assert world.query("SELECT state FROM maildesk_ingest_queue")[0][0] == "done"


# -- helpers ---------------------------------------------------------------------------


def _together(work, connect, count, tolerate=()):
    """Run ``work(conn)`` on ``count`` threads, each with its own connection, started together."""
    results, errors = [None] * count, []
    start = threading.Barrier(count)

    def run(slot):
        conn = connect()
        try:
            start.wait(timeout=10)
            results[slot] = work(conn)
        except tolerate:
            pass
        except BaseException as error:  # raised again below, in the test's thread
            errors.append(error)

    threads = [threading.Thread(target=run, args=(slot,)) for slot in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    if errors:
        raise errors[0]
    return results
