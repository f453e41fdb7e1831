"""Compose → Send → the sender cron → a real SMTP server (the sink, started in-process).

The sink is ``tests/harness/smtp_sink.py`` of the repository (scripts/test
puts the repository on PYTHONPATH). With ``MAILDESK_TEST_IMAP`` (Dovecot,
started by scripts/test) the account's own copy and the Sent copy go to a
real mailbox too; without it the Sent copy cannot be filed, which the
tests then check is said on the row.
"""

import json
import os

from odoo.exceptions import AccessError, UserError
from odoo.tests import tagged

from .common import MaildeskCase

try:
    from tests.harness.smtp_sink import SmtpSink
except ImportError as error:  # the addon installed without its repository, or aiosmtpd missing
    SmtpSink = None
    _SINK_MISSING = str(error)

IMAP_SLOT = 4  # MAILDESK_TEST_IMAP's mailbox for this module (test_imap_sync_odoo takes 0-3)


@tagged("post_install", "-at_install")
class TestOutbox(MaildeskCase):
    def setUp(self):
        super().setUp()
        if SmtpSink is None:
            self.skipTest(f"the SMTP sink cannot be imported ({_SINK_MISSING}): run through scripts/test")
        self.server = json.loads(os.environ["MAILDESK_TEST_IMAP"]) if os.environ.get("MAILDESK_TEST_IMAP") else None
        own = "alice@example.com"
        local = {}
        imap = {"imap_host": "127.0.0.1", "imap_port": 1, "imap_security": "none", "imap_login": "alice",
                "imap_password": "secret"}
        if self.server and len(self.server["users"]) > IMAP_SLOT:
            login, password = self.server["users"][IMAP_SLOT]
            imap = {"imap_host": self.server["host"], "imap_port": self.server["port"], "imap_security": "none",
                    "imap_login": login, "imap_password": password}
            mailbox = _Mailbox(self.server["host"], self.server["port"], login, password)
            mailbox.ensure_sent()
            local[own] = mailbox
        # The SMTP login defaults to the IMAP one: the sink asks for it.
        self.sink = SmtpSink(users={imap["imap_login"]: imap["imap_password"]}, local=local).start()
        self.addCleanup(self.sink.stop)
        (self.account_bob | self.account_shared).sync_enabled = False
        self.account_alice.write({**imap, "email": own, "smtp_host": self.sink.host, "smtp_port": self.sink.port,
                                  "smtp_security": "none", "sync_enabled": False})
        self.sent_folder = self.make_folder(self.account_alice, "Sent", "sent")
        self.env["ir.config_parameter"].sudo().set_param("maildesk.undo_send_seconds", 0)
        self.Outbox = self.env["maildesk.outbox"].with_user(self.alice)

    def _draft(self, **values):
        draft = self.Outbox.maildesk_compose("new", account_id=self.account_alice.id)
        self.Outbox.maildesk_save_draft(draft["id"], {"subject": "Hello", "body_html": "<p>Hi <b>Bob</b></p>",
                                                      "email_to": "Bob <bob@example.net>", **values})
        return self.Outbox.browse(draft["id"])

    def _run_cron(self):
        self.env["maildesk.outbox"]._cron_maildesk_send_outbox()
        self.env.invalidate_all()

    def test_compose_send_and_the_cron_delivers_once(self):
        row = self._draft(email_bcc="carol@example.org")
        answer = self.Outbox.maildesk_send(row.id)
        self.assertEqual(answer["state"], "queued")
        self.assertTrue(row.message_id.startswith("<") and row.message_id.endswith("@example.com>"))
        self._run_cron()
        self._run_cron()  # a second run finds nothing to do: never twice
        self.assertEqual(row.state, "sent", row.last_error)
        self.assertEqual(self.sink.count(row.message_id), 1)
        received = self.sink.messages[0]
        self.assertIn("carol@example.org", received.rcpt_tos)
        self.assertNotIn(b"carol@example.org", received.data)  # Bcc only in the envelope
        self.assertIn(b"Subject: Hello", received.data)
        self.assertIn(b"text/plain", received.data)
        self.assertIn(b"text/html", received.data)
        if self.sink.local:
            self.assertTrue(row.sent_filed)
            sent = self.env["maildesk.message_index"].search([("folder_id", "=", self.sent_folder.id)])
            self.assertEqual(sent.mapped("message_id"), [row.message_id])
        else:
            self.assertFalse(row.sent_filed)
            self.assertIn("could not be put in the Sent folder", row.last_error)
        status = self.Outbox.maildesk_outbox_status([row.id])
        self.assertEqual(status[0]["state"], "sent")

    def test_undo_within_the_window(self):
        self.env["ir.config_parameter"].sudo().set_param("maildesk.undo_send_seconds", 60)
        row = self._draft()
        self.Outbox.maildesk_send(row.id)
        self._run_cron()  # the window is open: nothing goes out
        self.assertEqual(row.state, "queued")
        self.assertTrue(self.Outbox.maildesk_undo_send(row.id))
        row.invalidate_recordset()
        self.assertEqual(row.state, "draft")
        self._run_cron()
        self.assertFalse(self.sink.messages)
        self.env["ir.config_parameter"].sudo().set_param("maildesk.undo_send_seconds", 0)
        self.Outbox.maildesk_send(row.id)
        self._run_cron()
        self.assertEqual(row.state, "sent")
        self.assertFalse(self.Outbox.maildesk_undo_send(row.id), "too late: it is sent")

    def test_refused_recipient_fails_with_retry_and_discard(self):
        row = self._draft()
        self.sink.refuse("rcpt", 550, address="bob@example.net")
        self.Outbox.maildesk_send(row.id)
        self._run_cron()
        self.assertEqual((row.state, row.failure_kind), ("failed", "permanent"))
        self.assertIn("bob@example.net", row.last_error)
        self.assertIn("550", row.last_error)
        self.assertIn(row.id, [d["id"] for d in self.Outbox.maildesk_drafts()])
        row.with_user(self.alice).action_retry()
        self.assertEqual(row.state, "queued")
        self._run_cron()
        self.assertEqual(row.state, "sent")
        self.assertEqual(self.sink.count(row.message_id), 1)

        other = self._draft(subject="Nope")
        self.sink.refuse("rcpt", 550, address="bob@example.net")
        self.Outbox.maildesk_send(other.id)
        self._run_cron()
        self.assertEqual(other.state, "failed")
        other.with_user(self.alice).action_discard()
        self.assertFalse(other.exists())

    def test_invalid_recipients_are_refused_before_queueing(self):
        row = self._draft(email_to="not an address")
        with self.assertRaises(UserError):
            self.Outbox.maildesk_send(row.id)
        self.assertEqual(row.state, "draft")

    def test_another_user_cannot_read_or_send_someone_elses_row(self):
        row = self._draft()
        as_bob = self.env["maildesk.outbox"].with_user(self.bob)
        with self.assertRaises(AccessError):
            as_bob.browse(row.id).read(["subject"])
        with self.assertRaises(AccessError):
            as_bob.maildesk_send(row.id)
        with self.assertRaises(AccessError):
            as_bob.maildesk_undo_send(row.id)
        with self.assertRaises(AccessError):
            as_bob.browse(row.id).action_discard()
        with self.assertRaises(AccessError):
            as_bob.maildesk_save_draft(row.id, {"subject": "mine now"})
        self.assertFalse(as_bob.search([("id", "=", row.id)]))
        self.assertFalse(as_bob.maildesk_outbox_status([row.id]))
        with self.assertRaises(AccessError):  # nor write from Alice's mailbox
            as_bob.create({"account_id": self.account_alice.id, "subject": "spoof"})
        with self.assertRaises(AccessError):  # the sender's fields are the sender's
            self.Outbox.browse(row.id).write({"state": "sent"})
        self.assertEqual(self.env["maildesk.outbox"].with_user(self.boss).browse(row.id).subject, "Hello")
        self.assertFalse(self.sink.messages)

    def test_reply_and_forward_headers(self):
        inbox = self.make_folder(self.account_alice)
        original = self.make_message(inbox, 7, subject="Plans", from_address="Carol <carol@example.com>",
                                     to_addresses="alice@example.com, dan@example.com",
                                     cc_addresses="Erin <erin@example.com>", message_id="<m1@example.com>",
                                     references_header="<m0@example.com>")
        reply = self.Outbox.maildesk_compose("reply", index_id=original.id)
        self.assertEqual(reply["subject"], "Re: Plans")
        self.assertIn("carol@example.com", reply["email_to"])
        self.assertFalse(reply["email_cc"])
        row = self.Outbox.browse(reply["id"])
        self.assertEqual(row.in_reply_to, "<m1@example.com>")
        self.assertEqual(row.references, "<m0@example.com> <m1@example.com>")
        self.assertIn("<blockquote", reply["body_html"])
        everyone = self.Outbox.maildesk_compose("reply_all", index_id=original.id)
        self.assertIn("dan@example.com", everyone["email_cc"])
        self.assertIn("erin@example.com", everyone["email_cc"])
        self.assertNotIn("alice@example.com", everyone["email_cc"] + everyone["email_to"])
        original.sudo().subject = "RE: Plans"
        self.assertEqual(self.Outbox.maildesk_compose("reply", index_id=original.id)["subject"], "RE: Plans")
        self.assertEqual(self.Outbox.maildesk_compose("forward", index_id=original.id)["subject"], "Fwd: RE: Plans")

    def test_signature_is_appended_and_personal(self):
        self.env["maildesk.signature"].with_user(self.alice).maildesk_set_signature(self.account_alice.id,
                                                                                   "<p>-- Alice</p>")
        draft = self.Outbox.maildesk_compose("new", account_id=self.account_alice.id)
        self.assertIn("-- Alice", draft["body_html"])
        self.assertFalse(self.env["maildesk.signature"].with_user(self.bob).search([]))


class _Mailbox:
    """A Dovecot user the sink delivers to (the account's own copy), and that holds the Sent folder."""

    def __init__(self, host, port, login, password):
        self.host, self.port, self.login, self.password = host, port, login, password

    def client(self):
        from imapclient import IMAPClient

        client = IMAPClient(self.host, port=self.port, ssl=False, timeout=10)
        client.login(self.login, self.password)
        return client

    def ensure_sent(self):
        client = self.client()
        try:
            if not client.folder_exists("Sent"):
                client.create_folder("Sent")
        finally:
            client.logout()
