"""Ingest regressions found by review: the scan under Odoo's real cron runner, and what it queues.

The first test is the review's proof (Odoo 18's ir.cron runner keeps the job's row locked
``FOR NO KEY UPDATE`` in another cursor for the whole job: a scan that waited for every older
transaction waited for its own runner, forever). The scan now waits only for transactions that
can still commit rows into ``maildesk_message_index``.
"""

import dataclasses

from maildesk_mail_client.application.use_cases.ingest import import_pending, scan, synthetic_message_id

from .test_ingest_engine import ALIAS, FAST, _deadline, ports, world  # noqa: F401  (fixture)


def _cron_runner_lock(world):  # noqa: F811
    """What ir.cron's runner does before calling the job: lock the job's row in cron_cr (left open)."""
    conn = world.connect()
    with conn.cursor() as cr:
        cr.execute("CREATE TABLE IF NOT EXISTS ir_cron_standin (id int PRIMARY KEY)")
        cr.execute("INSERT INTO ir_cron_standin VALUES (1) ON CONFLICT DO NOTHING")
    conn.commit()
    with conn.cursor() as cr:
        cr.execute("SELECT * FROM ir_cron_standin WHERE id = 1 FOR NO KEY UPDATE SKIP LOCKED")
        cr.execute("SELECT txid_current_if_assigned()")
        assert cr.fetchone()[0] is not None  # the row lock gave cron_cr an xid
    return conn


def test_scan_settles_while_its_own_cron_row_is_locked(world):  # noqa: F811
    account = world.account()
    world.message(account, 1, to=ALIAS)
    cron_cr_conn = _cron_runner_lock(world)
    # ir.cron._run_job commits job_cr before the callback (as any other write on the cluster does):
    # a later xid completes, so the scan's horizon passes cron_cr's xid.
    world.message(account, 2, to=ALIAS)
    try:
        report = scan(ports(world.conn, settings=dataclasses.replace(FAST, settle_seconds=1.0)), _deadline())
    finally:
        cron_cr_conn.rollback()
    assert not report.unsettled, "the scan waited for its own cron runner's transaction"
    assert report.queued == 2


def test_an_open_writer_of_the_index_still_holds_the_scan_beside_the_cron_runner(world):  # noqa: F811
    """The other half: while the cron runner's lock is held, a transaction that inserted an index row
    and has not committed keeps the mark below its row; once it commits, the row is queued."""
    account = world.account()
    cron_cr_conn = _cron_runner_lock(world)
    late = world.connect()
    try:
        world.message(account, 1, to=ALIAS, conn=late, commit=False)  # takes its id, commits later
        world.message(account, 2, to=ALIAS)
        report = scan(ports(world.conn, settings=dataclasses.replace(FAST, settle_seconds=0.3)), _deadline())
        assert report.unsettled and report.queued == 0
        late.commit()
        report = scan(ports(world.conn, settings=dataclasses.replace(FAST, settle_seconds=1.0)), _deadline())
        assert not report.unsettled and report.queued == 2
    finally:
        cron_cr_conn.rollback()
        late.rollback()


def _add_sent_folder(world, account):  # noqa: F811
    with world.conn.cursor() as cr:
        cr.execute("INSERT INTO maildesk_folder (account_id, path, remote_id, role) VALUES (%s, 'Sent', 'Sent', "
                   "'sent') RETURNING id", [account])
        world.folders[account, "Sent"] = cr.fetchone()[0]
    world.conn.commit()


def test_replies_only_to_what_odoo_sent_and_never_the_users_own_sent_mail(world):  # noqa: F811
    account = world.account()
    _add_sent_folder(world, account)
    world.odoo_sent("<odoo-sent@odoo.test>")  # an email Odoo sent (type email, with an author)
    with world.conn.cursor() as cr:  # an internal tracking message, never sent out
        cr.execute("INSERT INTO mail_message (message_id, model, res_id, message_type, author_id) "
                   "VALUES ('<tracking@odoo.test>', 'res.partner', 7, 'notification', NULL)")
    world.conn.commit()
    world.message(account, 1, in_reply_to="<odoo-sent@odoo.test>")  # a reply to Odoo's mail: queued
    world.message(account, 2, in_reply_to="<tracking@odoo.test>")  # names a message that never went out
    world.message(account, 3, to=ALIAS, folder="Sent")  # the user's own mail to an alias
    # The same sent message seen again in another folder (Gmail's All Mail): still the user's own.
    world.message(account, 4, to=ALIAS, folder="Archive", message_id="<m3@example.com>")
    world.message(account, 5, folder="Sent", in_reply_to="<odoo-sent@odoo.test>")  # the user's own reply

    report = scan(ports(world.conn), _deadline())

    assert world.queued() == {(account, "<m1@example.com>")}, report


def test_aliased_mail_without_a_message_id_is_queued_under_a_stable_id_and_imported_once(world):  # noqa: F811
    account = world.account()
    index_id = world.message(account, 1, to=ALIAS, message_id=None, cache=False)
    with world.conn.cursor() as cr:
        cr.execute("UPDATE maildesk_message_index SET message_id = NULL WHERE id = %s", [index_id])
        raw = (b"From: customer@example.com\r\nTo: " + ALIAS.encode() + b"\r\nSubject: no id\r\n\r\nHello\r\n")
        cr.execute("INSERT INTO maildesk_ui_cache (index_id, account_id, raw_message, raw_size, fetched_at, "
                   "expires_at) VALUES (%s, %s, %s, %s, now(), now() + interval '30 days')",
                   [index_id, account, raw, len(raw)])
    world.conn.commit()

    assert scan(ports(world.conn), _deadline()).queued == 1
    synthetic = synthetic_message_id(account, index_id)
    assert world.queued() == {(account, synthetic)}

    seen = []

    class Gateway:
        def __init__(self, conn):
            self.cr = conn.cursor()

        def process(self, raw, message_id):
            seen.append(raw)
            self.cr.execute("INSERT INTO mail_message (message_id) VALUES (%s) RETURNING id", [message_id])
            return self.cr.fetchone()[0]

    report = import_pending(ports(world.conn, importer=Gateway(world.conn)), _deadline())
    assert report.imported == 1
    # The gateway got the id in the message itself, so Odoo stores it and never imports it twice.
    assert seen[0].startswith(b"Message-ID: " + synthetic.encode() + b"\r\n")
    assert world.query("SELECT state FROM maildesk_ingest_queue") == [("done",)]
