"""maildesk.outbox over RPC, as a plain MailDesk user: what a caller may and may not set.

Found by review (all five first tests failed on edb6ad9): create() took state / MIME / send_after from
the caller, linking an attachment moved it off its record (and discarding the draft deleted it), the
thread headers and sender-owned fields were writable, and queued rows of an archived account stayed
queued forever. Plus the send rights: reading a shared mailbox is not sending as it.
"""

import datetime as dt

from odoo import fields
from odoo.exceptions import AccessError, UserError
from odoo.tests import tagged

from .common import MaildeskCase
from .test_outbox import SmtpSink

FORGED = (b"From: The CEO <ceo@example.com>\r\nTo: victim@example.net\r\nSubject: wire the money\r\n"
          b"Message-ID: <forged@example.com>\r\n\r\nPlease wire 50k today.\r\n")


@tagged("post_install", "-at_install")
class TestOutboxSecurity(MaildeskCase):
    def setUp(self):
        super().setUp()
        if SmtpSink is None:
            self.skipTest("the SMTP sink cannot be imported: run through scripts/test")
        self.sink = SmtpSink(users={"x": "secret"}).start()
        self.addCleanup(self.sink.stop)
        (self.account_bob | self.account_alice).sync_enabled = False
        self.account_shared.write({"email": "support@example.com", "smtp_host": self.sink.host,
                                   "smtp_port": self.sink.port, "smtp_security": "none", "sync_enabled": False,
                                   "shared_users_may_send": True})
        self.env["ir.config_parameter"].sudo().set_param("maildesk.undo_send_seconds", 0)
        self.Outbox = self.env["maildesk.outbox"].with_user(self.alice)

    def test_create_over_rpc_cannot_queue_its_own_raw_mime(self):
        """create() keeps a caller's state / mime / send_after (only write() guards them): a user queues
        arbitrary bytes, with any From: header, and the sender cron hands them to the account's SMTP."""
        try:
            row = self.Outbox.create({
                "account_id": self.account_shared.id, "email_to": "victim@example.net",
                "state": "queued", "mime": FORGED.decode(),  # as JSON-RPC carries it: a str, stored verbatim
                "send_after": fields.Datetime.now() - dt.timedelta(hours=1),
            })
        except (AccessError, UserError):
            return  # the fix: refused
        self.env["maildesk.outbox"]._cron_maildesk_send_outbox()
        self.env.invalidate_all()
        forged = [m for m in self.sink.messages if b"ceo@example.com" in m.data]
        self.assertFalse(forged, f"row {row.id} ({row.state}) sent the caller's own MIME with a forged From: "
                                 f"{forged[0].data[:120] if forged else ''}")
        self.assertEqual(row.state, "draft", "create() accepted state=queued from RPC")

    def test_linking_an_attachment_does_not_take_it_from_its_record(self):
        """attachment_ids → _maildesk_own_attachments re-homes (sudo) any attachment the user can merely
        read onto the draft; discarding the draft then deletes it (BaseModel.unlink removes res_model/res_id
        attachments)."""
        partner = self.env["res.partner"].create({"name": "Customer"})
        contract = self.env["ir.attachment"].create({
            "name": "contract.pdf", "raw": b"%PDF signed", "res_model": "res.partner", "res_id": partner.id})
        contract.with_user(self.alice).check_access("read")  # Alice may read it (she may read partners)
        with self.assertRaises(AccessError):  # ... but not change which record it belongs to
            contract.with_user(self.alice).write({"res_model": "maildesk.outbox", "res_id": 1})
        draft = self.Outbox.maildesk_compose("new", account_id=self.account_shared.id)
        self.Outbox.maildesk_save_draft(draft["id"], {"attachment_ids": [contract.id]})
        contract.invalidate_recordset()
        self.assertEqual((contract.res_model, contract.res_id), ("res.partner", partner.id),
                         "the partner's attachment was moved onto Alice's draft")
        self.Outbox.maildesk_discard(draft["id"])
        self.assertTrue(contract.exists(), "discarding the draft deleted the partner's attachment")

    def test_discarding_a_draft_does_not_delete_an_attachment_of_another_record(self):
        partner = self.env["res.partner"].create({"name": "Customer"})
        contract = self.env["ir.attachment"].create({
            "name": "contract.pdf", "raw": b"%PDF signed", "res_model": "res.partner", "res_id": partner.id})
        draft = self.Outbox.maildesk_compose("new", account_id=self.account_shared.id)
        self.Outbox.maildesk_save_draft(draft["id"], {"attachment_ids": [contract.id]})
        self.Outbox.maildesk_discard(draft["id"])
        self.assertTrue(contract.exists(), "discarding the draft deleted the partner's attachment")

    def test_rpc_write_of_sender_owned_fields(self):
        """write() guards state/mime/attempts only: sent_filed, sent_at, last_error, max_attempts,
        in_reply_to/references and compose_mode are all writable over RPC."""
        draft = self.Outbox.maildesk_compose("new", account_id=self.account_shared.id)
        row = self.Outbox.browse(draft["id"])
        written = {}
        for name, value in (("max_attempts", 100000), ("sent_at", fields.Datetime.now()),
                            ("in_reply_to", "<x@y>"), ("references", "<someone-elses-thread@odoo>")):
            try:
                row.write({name: value})
            except (AccessError, UserError):
                continue  # refused: what the test wants
            written[name] = value
        self.assertFalse(written, f"fields the UI shows read-only were written over RPC: {sorted(written)}")

    def test_a_queued_row_of_an_archived_account_is_not_left_queued_forever(self):
        draft = self.Outbox.maildesk_compose("new", account_id=self.account_shared.id)
        self.Outbox.maildesk_save_draft(draft["id"], {"email_to": "bob@example.net", "subject": "s"})
        self.Outbox.maildesk_send(draft["id"])
        self.account_shared.active = False
        self.env["maildesk.outbox"]._cron_maildesk_send_outbox()
        self.env.invalidate_all()
        row = self.Outbox.browse(draft["id"])
        self.assertNotEqual(row.state, "queued", "the row stays 'Sending…' forever: the sender skips archived "
                                                 "accounts and nothing fails it")
        self.assertEqual(row.state, "failed")
        self.assertIn("archived", row.last_error)
        self.assertFalse(self.sink.messages)

    def test_create_keeps_only_what_a_draft_may_hold(self):
        row = self.Outbox.create({
            "account_id": self.account_shared.id, "email_to": "bob@example.net", "subject": "s",
            "user_id": self.alice.id, "attempts": 3, "max_attempts": 100000, "in_reply_to": "<x@y>",
            "references": "<someone-elses-thread@odoo>", "sent_at": fields.Datetime.now(),
            "last_error": "forged", "failure_kind": "permanent", "compose_mode": "reply",
            "message_id": "<chosen@example.com>"})
        self.assertEqual((row.state, row.attempts, row.max_attempts, row.in_reply_to, row.references, row.sent_at,
                          row.last_error, row.failure_kind, row.compose_mode),
                         ("draft", 0, 5, False, False, False, False, False, "new"))
        self.assertNotEqual(row.message_id, "<chosen@example.com>")
        self.assertEqual(row.user_id, self.alice)

    def test_a_reply_still_gets_its_thread_headers_from_the_source(self):
        inbox = self.make_folder(self.account_shared, "INBOX", "inbox")
        source = self.make_message(inbox, 1, message_id="<orig@example.net>",
                                   references_header="<root@example.net>", from_address="Bob <bob@example.net>",
                                   subject="Question")
        draft = self.Outbox.maildesk_compose("reply", index_id=source.id)
        row = self.Outbox.browse(draft["id"])
        self.assertEqual(row.in_reply_to, "<orig@example.net>")
        self.assertEqual(row.references, "<root@example.net> <orig@example.net>")
        self.assertEqual((row.compose_mode, row.parent_index_id), ("reply", source))

    def test_reading_a_shared_mailbox_does_not_let_one_send_from_it(self):
        self.account_shared.shared_users_may_send = False
        self.assertNotIn(self.account_shared, self.Outbox._maildesk_sendable_accounts())
        with self.assertRaises(AccessError):
            self.Outbox.create({"account_id": self.account_shared.id})
        self.account_shared.shared_users_may_send = True
        draft = self.Outbox.maildesk_compose("new", account_id=self.account_shared.id)
        self.Outbox.maildesk_save_draft(draft["id"], {"email_to": "bob@example.net", "subject": "s"})
        self.account_shared.shared_users_may_send = False  # taken back before Send
        with self.assertRaises(AccessError):
            self.Outbox.maildesk_send(draft["id"])
        # The owner and administrators may always send from it.
        boss_box = self.env["maildesk.outbox"].with_user(self.boss)._maildesk_sendable_accounts()
        self.assertIn(self.account_shared, boss_box)

    def test_an_archived_account_takes_no_new_message(self):
        self.account_shared.active = False
        with self.assertRaises(AccessError):
            self.Outbox.create({"account_id": self.account_shared.id})

    def test_a_line_break_in_the_subject_is_refused_at_send(self):
        draft = self.Outbox.maildesk_compose("new", account_id=self.account_shared.id)
        self.Outbox.maildesk_save_draft(draft["id"], {"email_to": "bob@example.net",
                                                      "subject": "Hi\r\nBcc: everyone@example.com"})
        with self.assertRaisesRegex(UserError, "line breaks"):
            self.Outbox.maildesk_send(draft["id"])

    def test_an_upload_of_the_user_becomes_the_drafts_and_goes_with_it(self):
        upload = self.env["ir.attachment"].with_user(self.alice).create({
            "name": "notes.txt", "raw": b"notes", "res_model": "maildesk.outbox", "res_id": 0})
        draft = self.Outbox.maildesk_compose("new", account_id=self.account_shared.id)
        self.Outbox.maildesk_save_draft(draft["id"], {"attachment_ids": [upload.id]})
        upload.invalidate_recordset()
        self.assertEqual((upload.res_model, upload.res_id), ("maildesk.outbox", draft["id"]))
        self.assertEqual(self.Outbox.browse(draft["id"]).attachment_ids, upload)
        self.Outbox.maildesk_discard(draft["id"])
        self.assertFalse(upload.exists())
