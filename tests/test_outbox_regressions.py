"""Sender regressions found by review, against the real sink, Dovecot and PostgreSQL.

- A send slower than the lease is not sent again by a second worker (the lease is renewed by a
  heartbeat during the transport call).
- After the answer to DATA is lost, an absent proof does not allow a resend: the row ends failed /
  unknown for the user to check, unless the proof finds the message (Sent, INBOX, or Junk).
- An own copy that reaches INBOX after the Sent copy was filed is removed on a later run.
- One row or account failing unexpectedly does not stop the others; rows of archived accounts fail.
"""

import dataclasses
import threading
import time

from maildesk_mail_client.application.sending import SendSettings
from maildesk_mail_client.application.use_cases.send_outbox import (
    ARCHIVED_MESSAGE,
    UNCERTAIN_MESSAGE,
    send_account,
)

from .harness.send_world import TEST_SETTINGS, SendWorld, address_of, make_ports
from .harness.smtp_sink import SmtpSink
from .test_outbox_send import own_sink

SLOW = SendSettings(backoff_base=0, proof_wait=2, lease_ttl=2)


def test_a_send_slower_than_the_lease_is_not_sent_again_by_a_second_worker(pg_db, imap_account):
    """Review: SmtpConfig.timeout is per socket operation, so a send to many recipients on a slow server
    outlasts any fixed lease. Scaled down: lease_ttl = proof_wait = 2 s, a send that takes 4 s."""
    sink, mailboxes = own_sink(imap_account)
    with sink:
        world = SendWorld(pg_db, sink, mailboxes, settings=SLOW)
        account_id = next(iter(world.accounts))
        world.queue(account_id, 1)

        def slow_transport(account):
            transport = world.transport(account)
            real_send = transport.send

            def send(mime, envelope_from, recipients):
                time.sleep(4)  # slow RCPTs / a slow upload: still well within 30 s per operation
                return real_send(mime, envelope_from, recipients)

            transport.send = send
            return transport

        first = make_ports(pg_db(), pg_db, slow_transport, SLOW, holder="host-a:1:a")
        second = make_ports(pg_db(), pg_db, world.transport, SLOW, holder="host-b:1:b")
        worker_a = threading.Thread(target=send_account, args=(first, account_id, time.monotonic() + 60))
        worker_a.start()
        time.sleep(2.5)  # A's lease would have expired; A is still talking to the server
        assert send_account(second, account_id, time.monotonic() + 60) is None, "B took A's live lease"
        worker_a.join()
        row = world.rows()[0]
        assert sink.count(row["message_id"]) == 1, f"accepted {sink.count(row['message_id'])} times"


def _no_delivery_world(pg_db, imap_account, **settings):
    """The server accepts, but no own copy ever comes back (a filter dropped it)."""
    mailbox = imap_account()
    sink = SmtpSink()
    world_settings = dataclasses.replace(TEST_SETTINGS, **settings)
    return sink, mailbox, world_settings


def _pending(world, row_id):
    cr = world.conn.cursor()
    cr.execute("SELECT own_copy_pending, handed_over FROM maildesk_outbox WHERE id = %s", [row_id])
    result = cr.fetchone()
    world.conn.commit()
    return result


def test_answer_lost_and_no_proof_ends_unknown_instead_of_sending_again(pg_db, imap_account):
    sink, mailbox, settings = _no_delivery_world(pg_db, imap_account, proof_wait=1)
    with sink:
        world = SendWorld(pg_db, sink, [mailbox], settings=settings)
        account_id = next(iter(world.accounts))
        world.queue(account_id, 1)
        sink.drop_after_data()
        report = world.send(account_id)
        assert report.awaiting_proof == 1
        time.sleep(1.1)
        world.settle()
        row = world.rows()[0]
        assert row["state"] == "failed" and row["failure_kind"] == "unknown", row
        assert row["last_error"] == UNCERTAIN_MESSAGE
        assert sink.count(row["message_id"]) == 1, "sent again on an absent proof"


def test_the_proof_also_looks_in_junk(pg_db, imap_account):
    sink, mailbox, settings = _no_delivery_world(pg_db, imap_account, proof_wait=1)
    with sink:
        world = SendWorld(pg_db, sink, [mailbox], settings=settings)
        client = mailbox.client()
        try:
            client.create_folder("Junk")
        finally:
            client.logout()
        account_id = next(iter(world.accounts))
        world.queue(account_id, 1)
        sink.drop_after_data()
        world.send(account_id)
        client = mailbox.client()
        try:  # a filter put the own copy in Junk
            client.append("Junk", sink.messages[0].data)
        finally:
            client.logout()
        world.settle()
        row = world.rows()[0]
        assert row["state"] == "sent" and sink.count(row["message_id"]) == 1, row


def test_an_own_copy_arriving_after_the_sent_copy_is_removed_on_a_later_run(pg_db, imap_account):
    sink, mailbox, settings = _no_delivery_world(pg_db, imap_account, own_copy_retry=1)
    with sink:
        world = SendWorld(pg_db, sink, [mailbox], settings=settings)
        account_id = next(iter(world.accounts))
        world.queue(account_id, 1)
        world.queue(account_id, 1, to=f"bob@example.net, {address_of(mailbox)}")  # wrote to themselves too
        world.settle()
        first, second = world.rows()
        assert first["state"] == second["state"] == "sent" and first["sent_filed"]
        assert _pending(world, first["id"])[0] is True, "the own copy was not there yet: look again later"
        client = mailbox.client()
        try:  # the own copies arrive late
            for received in sink.messages:
                client.append("INBOX", received.data)
        finally:
            client.logout()
        time.sleep(1.1)  # own_copy_retry
        world.send_all()
        inbox = world.message_ids_in(account_id, "INBOX")
        assert first["message_id"] not in inbox, "the late own copy stayed in INBOX"
        assert inbox.get(second["message_id"]) == 1, "a message the user sent to themselves was removed"
        assert _pending(world, first["id"])[0] is False
        assert sink.count(first["message_id"]) == 1


def test_a_row_the_proof_check_crashes_on_fails_visibly_and_other_accounts_still_send(pg_db, imap_account):
    sink, mailboxes = own_sink(imap_account, accounts=2)
    with sink:
        world = SendWorld(pg_db, sink, mailboxes)
        broken, healthy = sorted(world.accounts)
        world.queue(broken, 1)
        world.queue(healthy, 1)
        cr = world.conn.cursor()
        cr.execute("UPDATE maildesk_outbox SET state = 'sending', attempts = 1, last_attempt_at = now() "
                   "WHERE account_id = %s", [broken])
        world.conn.commit()
        plain = world.transport

        def transports(account_id):
            transport = plain(account_id)
            if account_id == broken:
                def find_sent(message_id):
                    raise RuntimeError("a bug in the proof")
                transport.find_sent = find_sent
            return transport

        world.ports.transports = transports
        world.send_all()
        failed = world.rows(broken)[0]
        assert failed["state"] == "failed" and failed["failure_kind"] == "unknown", failed
        assert "a bug in the proof" in failed["last_error"] and "Retry or Discard" in failed["last_error"]
        assert world.rows(healthy)[0]["state"] == "sent"


def test_queued_rows_of_an_archived_account_fail_with_a_reason(pg_db, imap_account):
    sink, mailboxes = own_sink(imap_account)
    with sink:
        world = SendWorld(pg_db, sink, mailboxes)
        account_id = next(iter(world.accounts))
        world.queue(account_id, 1)
        cr = world.conn.cursor()
        cr.execute("UPDATE mailbox_account SET active = false WHERE id = %s", [account_id])
        world.conn.commit()
        world.send_all()
        row = world.rows()[0]
        assert row["state"] == "failed" and row["failure_kind"] == "permanent", row
        assert row["last_error"] == ARCHIVED_MESSAGE and not sink.messages
