"""Ingest into chatter (DESIGN §3 flow 4) inside Odoo, against the real Dovecot of the test command.

Messages are appended to a Dovecot mailbox, indexed by the bootstrap cron,
then the alias-scan and import crons run as Odoo runs them: the import
fetches each raw message from Dovecot through the provider port and hands
it to ``mail.thread.message_process``, which routes it by Odoo's alias or
as a reply. Two workers at once (separate transactions) cannot meet inside
one test transaction: tests/test_ingest_engine.py proves that on PostgreSQL.
"""

import datetime as dt
import json
import os
from email.message import EmailMessage

from odoo.exceptions import AccessError, UserError
from odoo.tests import tagged

from .common import MaildeskCase

#: MAILDESK_TEST_IMAP's mailbox for this module (test_imap_sync_odoo.py takes 0-3, test_inbox_read 6, tours the last)
IMAP_SLOT = 5
ALIAS_DOMAIN = "ingest.test"


def _message(number, to, subject=None, in_reply_to=None, attachment=None):
    msg = EmailMessage()
    msg["From"] = f"Candidate {number} <candidate{number}@example.com>"
    msg["To"] = to
    msg["Subject"] = subject or f"Application {number}"
    msg["Message-ID"] = f"<ingest-{number}@example.com>"
    msg["Date"] = (dt.datetime(2024, 3, 1, tzinfo=dt.timezone.utc) + dt.timedelta(minutes=number)).strftime(
        "%a, %d %b %Y %H:%M:%S +0000")
    if in_reply_to:
        msg["In-Reply-To"] = in_reply_to
        msg["References"] = in_reply_to
    msg.set_content(f"Body {number}")
    if attachment:
        name, content = attachment
        msg.add_attachment(content, maintype="application", subtype="octet-stream", filename=name)
    return msg.as_bytes()


@tagged("post_install", "-at_install", "maildesk_imap")
class TestIngestIntoChatter(MaildeskCase):
    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        raw = os.environ.get("MAILDESK_TEST_IMAP")
        cls.server = json.loads(raw) if raw else None
        cls.domain = cls.env["mail.alias.domain"].create({"name": ALIAS_DOMAIN})
        cls.alias = cls.env["mail.alias"].create({
            "alias_name": "candidates", "alias_domain_id": cls.domain.id,
            "alias_model_id": cls.env["ir.model"]._get_id("res.partner"), "alias_contact": "everyone",
        })
        cls.Queue = cls.env["maildesk.ingest_queue"]

    def setUp(self):
        super().setUp()
        if not self.server:
            self.skipTest("MAILDESK_TEST_IMAP is not set: run the suite through scripts/test, which starts Dovecot")
        from imapclient import IMAPClient

        login, password = self.server["users"][IMAP_SLOT]
        (self.account_alice | self.account_bob | self.account_shared).sync_enabled = False
        self.imap = IMAPClient(self.server["host"], port=self.server["port"], ssl=False, timeout=10)
        self.imap.login(login, password)
        self.addCleanup(self.imap.logout)
        for _flags, _delim, name in self.imap.list_folders():
            if name.upper() != "INBOX":
                self.imap.delete_folder(name)
        self.imap.select_folder("INBOX")
        self.imap.delete_messages(self.imap.search("ALL"))
        self.imap.expunge()
        self.account = self.env["mailbox.account"].create({
            "name": "Dovecot", "provider": "imap", "user_id": self.alice.id,
            "imap_host": self.server["host"], "imap_port": self.server["port"], "imap_security": "none",
            "imap_login": login, "imap_password": password,
        })

    # -- helpers -----------------------------------------------------------------------

    def _deliver(self, *raws):
        for raw in raws:
            self.imap.append("INBOX", raw)
        self.env["mailbox.account"]._cron_maildesk_bootstrap()

    def _crons(self, times=2):
        for _time in range(times):
            self.Queue._cron_maildesk_alias_scan()
            self.Queue._cron_maildesk_ingest_import()
        self.env.invalidate_all()

    def _queue(self, number):
        return self.Queue.search([("message_id", "=", f"<ingest-{number}@example.com>")])

    def _make_due(self, rows):
        self.env.flush_all()
        self.env.cr.execute("UPDATE maildesk_ingest_queue SET next_attempt_at = now() at time zone 'utc' "
                            "- interval '1 minute' WHERE id = ANY(%s)", [rows.ids])
        self.env.invalidate_all()

    # -- tests -------------------------------------------------------------------------

    def test_an_aliased_message_creates_its_record_once_and_a_reply_lands_in_the_right_chatter(self):
        customer = self.env["res.partner"].create({"name": "Existing customer", "email": "customer@example.com"})
        sent = customer.message_post(body="Your quote is attached.", message_type="comment",
                                     subtype_xmlid="mail.mt_comment")
        other = self.env["res.partner"].create({"name": "Someone else"})
        other.message_post(body="Unrelated", message_type="comment")
        self._deliver(
            _message(1, f"Jobs <candidates@{ALIAS_DOMAIN}>", attachment=("cv.pdf", b"%PDF-1.4 cv")),
            _message(2, "nobody@example.com", subject="Not for Odoo"),
            _message(3, "me@example.com", subject="Re: Your quote", in_reply_to=sent.message_id),
        )
        self.assertEqual(len(self.env["maildesk.message_index"].search([("account_id", "=", self.account.id)])), 3)

        self._crons(times=2)  # each cron twice: nothing doubles

        created = self.env["res.partner"].search([("name", "=", "Application 1")])
        self.assertEqual(len(created), 1, "the aliased message created its record once")
        logged = created.message_ids.filtered(lambda m: m.message_id == "<ingest-1@example.com>")
        self.assertEqual(len(logged), 1)
        self.assertEqual(logged.attachment_ids.mapped("name"), ["cv.pdf"])
        self.assertEqual(logged.attachment_ids.raw, b"%PDF-1.4 cv")
        reply = self.env["mail.message"].search([("message_id", "=", "<ingest-3@example.com>")])
        self.assertEqual((reply.model, reply.res_id), ("res.partner", customer.id), "the reply is in its chatter")
        self.assertEqual(reply.parent_id, sent)
        self.assertFalse(self._queue(2), "mail to no alias is not queued")
        self.assertEqual(self._queue(1).mapped("state"), ["done"])
        self.assertEqual(self._queue(1).mail_message_id, logged)
        self.assertEqual(self._queue(3).mapped("state"), ["done"])
        self.assertEqual(self.env["mail.message"].search_count([("message_id", "=", "<ingest-1@example.com>")]), 1)

        # The same message delivered again (another folder: a new index row) is not imported twice.
        self.imap.create_folder("Archive")
        self.imap.append("Archive", _message(1, f"candidates@{ALIAS_DOMAIN}"))
        self.env["mailbox.account"]._cron_maildesk_bootstrap()
        self._crons(times=1)
        self.assertEqual(len(self.env["res.partner"].search([("name", "=", "Application 1")])), 1)
        self.assertEqual(len(self._queue(1)), 1)

    def test_a_failing_import_retries_then_fails_visibly_and_requeue_imports_it(self):
        self._deliver(_message(10, f"candidates@{ALIAS_DOMAIN}"))
        self.Queue._cron_maildesk_alias_scan()
        row = self._queue(10)
        self.assertEqual(row.state, "pending")
        row.max_attempts = 2
        # The alias goes away before the import: Odoo's gateway has no route for the message.
        self.alias.alias_name = "former-candidates"

        self.Queue._cron_maildesk_ingest_import()
        self.env.invalidate_all()
        self.assertEqual((row.state, row.attempts), ("pending", 1))
        self.assertIn("No possible route", row.last_error)
        self.assertGreater(row.next_attempt_at, dt.datetime.utcnow() + dt.timedelta(seconds=30), "it backs off")
        self.Queue._cron_maildesk_ingest_import()  # not due yet
        self.env.invalidate_all()
        self.assertEqual(row.attempts, 1)

        self._make_due(row)
        self.Queue._cron_maildesk_ingest_import()
        self.env.invalidate_all()
        self.assertEqual((row.state, row.attempts), ("failed", 2))
        self.assertIn("No possible route", row.last_error)
        failed_view = self.Queue.with_user(self.boss).search([("state", "=", "failed")])
        self.assertIn(row, failed_view, "the administrator sees the failure and its reason")

        with self.assertRaises(AccessError):
            row.with_user(self.alice).action_requeue()
        self.alias.alias_name = "candidates"
        row.with_user(self.boss).action_requeue()
        self.assertEqual((row.state, row.attempts), ("pending", 0))
        self.Queue._cron_maildesk_ingest_import()
        self.env.invalidate_all()
        self.assertEqual(row.state, "done")
        self.assertEqual(len(self.env["res.partner"].search([("name", "=", "Application 10")])), 1)

    def test_log_in_chatter_by_hand_with_the_attachment(self):
        self._deliver(_message(20, "me@example.com", subject="Invoice question",
                               attachment=("invoice.pdf", b"%PDF-1.4 invoice")))
        message = self.env["maildesk.message_index"].search([("account_id", "=", self.account.id)])
        partner = self.env["res.partner"].create({"name": "Customer 20", "email": "candidate20@example.com"})
        # Posting in a chatter takes what Odoo asks of anyone posting there: write access to the record.
        self.alice.groups_id += self.env.ref("base.group_partner_manager")

        Wizard = self.env["maildesk.log_message"].with_user(self.alice)
        defaults = Wizard.with_context(default_index_id=message.id).default_get(["index_id", "record_ref"])
        self.assertEqual(defaults["record_ref"], f"res.partner,{partner.id}", "the sender's partner is proposed")
        self.assertIn("res.partner", dict(Wizard._selection_record_models()))
        wizard = Wizard.create({"index_id": message.id, "record_ref": f"res.partner,{partner.id}"})
        action = wizard.action_log()
        self.assertEqual((action["res_model"], action["res_id"]), ("res.partner", partner.id))

        logged = partner.message_ids.filtered(lambda m: m.message_id == "<ingest-20@example.com>")
        self.assertEqual(len(logged), 1)
        self.assertEqual(logged.subject, "Invoice question")
        self.assertIn("Body 20", logged.body)
        self.assertEqual(logged.attachment_ids.mapped("name"), ["invoice.pdf"])
        self.assertEqual(logged.attachment_ids.raw, b"%PDF-1.4 invoice")
        self.assertEqual(logged.author_id, partner)

        with self.assertRaises(UserError):
            Wizard.create({"index_id": message.id, "record_ref": f"res.partner,{partner.id}"}).action_log()
        # Bob may not read Alice's mailbox, so he cannot log its messages anywhere.
        with self.assertRaises(AccessError):
            self.env["maildesk.log_message"].with_user(self.bob).create(
                {"index_id": message.id, "record_ref": f"res.partner,{partner.id}"}).action_log()
