"""The composer in a real browser: compose and send, reply, forward with attachments, undo.

Each tour runs as Alice on a Dovecot mailbox (``MAILDESK_TEST_IMAP``, started
by ``scripts/test``) whose account sends through an SMTP sink the test starts
on loopback (``tests/harness/smtp_sink.py``). The browser cannot run the
sender cron, so the tour asks the test to (``/__send`` on the loopback
server of ``InboxTourCase``): the test waits for the undo window of the
queued rows to end, runs the cron on the test's cursor, and answers when each
row is sent or failed. What reached the sink is checked after the tour.
"""

import email
import email.policy
import time

from odoo import SUPERUSER_ID, api, fields

from .test_inbox_tours import PDF, DovecotTourCase

_DONE = ("sent", "failed")


class _DovecotUser:
    """A Dovecot mailbox the SMTP sink delivers into (its ``local`` delivery)."""

    def __init__(self, server, login, password):
        self.server, self.login, self.password = server, login, password

    def client(self):
        from imapclient import IMAPClient

        client = IMAPClient(self.server["host"], port=self.server["port"], ssl=False, timeout=10)
        client.login(self.login, self.password)
        return client


class TestComposerTours(DovecotTourCase):
    """Tours of static/tests/tours/maildesk_composer_*_tour.js."""

    #: Not the mailbox of the reading tours (the last one): each test empties its own.
    MAILBOX = -2

    def setUp(self):
        super().setUp()
        from tests.harness.smtp_sink import SmtpSink

        self.imap.create_folder("Sent")
        login, password = self.server["users"][self.MAILBOX]
        # Like a real MTA: SMTP login as the mailbox's user, and local delivery of the copy
        # addressed to the account itself (what the SMTP transport's proof of sending looks for).
        own = _DovecotUser(self.server, login, password)
        self.sink = SmtpSink(users={login: password}, local={self.account.email: own})
        self.sink.start()
        self.addCleanup(self.sink.stop)
        self.account.sudo().write({
            "smtp_host": self.sink.host, "smtp_port": self.sink.port, "smtp_security": "none",
        })
        self.env["maildesk.signature"].with_user(self.alice).create({
            "account_id": self.account.id, "body_html": "<p>-- Alice, via Dovecot</p>",
        })
        self.env["res.partner"].create({"name": "Zoe Client", "email": "zoe@client.test"})
        self.undo_seconds(2)
        self.loopback.on_send = self._run_sender
        self._patch_loopback()

    def undo_seconds(self, seconds):
        self.env["ir.config_parameter"].sudo().set_param("maildesk.undo_send_seconds", str(seconds))

    def _patch_loopback(self):
        """``/__send`` on the loopback server runs the sender (as ``/__deliver`` delivers)."""
        loopback = self.loopback
        handle = loopback._handle

        def _handle(request):
            if request.path.startswith("/__send"):
                try:
                    loopback.on_send()
                finally:
                    loopback._reply(request, 204)
                return None
            return handle(request)

        loopback._handle = _handle

    def _run_sender(self, timeout=20.0):
        """What the cron runner would do: once the undo window of Alice's queued rows is over,
        run the send cron (again while it leaves rows in flight, within ``timeout``)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self.registry.cursor() as cr:
                env = api.Environment(cr, SUPERUSER_ID, {})
                Outbox = env["maildesk.outbox"]
                pending = Outbox.search([("user_id", "=", self.alice.id), ("state", "in", ("queued", "sending"))])
                if not pending:
                    return
                now = fields.Datetime.now()
                if all(row.state == "queued" and row.send_after and row.send_after <= now for row in pending):
                    Outbox._cron_maildesk_send_outbox()
                    pending.invalidate_recordset()
                    if all(row.state in _DONE for row in pending) or any(row.next_attempt_at for row in pending):
                        return  # done, or backing off: the rows say why
            time.sleep(0.2)

    def outbox(self, subject):
        return self.env["maildesk.outbox"].sudo().search([("subject", "=", subject)])

    def received(self):
        """What the sink accepted: each message parsed, with its envelope recipients but the
        account's own address (the sender may add it: a copy to itself as proof of sending)."""
        return [(email.message_from_bytes(item.data, policy=email.policy.default),
                 sorted(set(item.rcpt_tos) - {self.account.email}))
                for item in self.sink.messages]

    def assert_filed_in_sent(self, row):
        """The Sent copy: in Dovecot's Sent folder, and in the index's Sent list at once."""
        self.imap.select_folder("Sent", readonly=True)
        self.assertEqual(len(self.imap.search(["HEADER", "Message-ID", row.message_id])), 1)
        self.imap.select_folder("INBOX")
        self.assertFalse(self.imap.search(["HEADER", "Message-ID", row.message_id]),
                         "the own copy (the proof of sending) stays in INBOX")
        indexed = self.env["maildesk.message_index"].sudo().search([
            ("account_id", "=", self.account.id), ("message_id", "=", row.message_id)])
        self.assertEqual(indexed.folder_id.mapped("role"), ["sent"])

    # -- the index: messages in Dovecot ------------------------------------------

    def _inbox(self):
        question = self.email("Budget question", text="How much can we spend on the offsite?\n")
        question.replace_header("Message-ID", "<budget-question@client.test>")
        question["References"] = "<budget-start@client.test>"
        self.append(question)
        report = self.email("Quarterly report", text="The report is attached.\n", minutes=5)
        report.add_attachment(PDF, maintype="application", subtype="pdf", filename="report.pdf")
        self.append(report)
        self.sync()

    # -- the tours ----------------------------------------------------------------

    def test_compose_and_send(self):
        """c, From with its signature, To / Cc by autocomplete, autosave, a reload, Drafts, Send → the sink."""
        self._inbox()
        self.tour("maildesk_composer_send", timeout=180)
        row = self.outbox("Hello from the composer")
        self.assertEqual(row.state, "sent", row.last_error)
        self.assertFalse(self.outbox("Composer draft"), "the reload must not leave a second draft")
        received = self.received()
        self.assertEqual(len(received), 1, "one message, sent once")
        message, recipients = received[0]
        self.assertEqual(message["Message-ID"], row.message_id)
        self.assertEqual(message["Subject"], "Hello from the composer")
        self.assertIn("alice@example.com", message["From"])
        self.assertEqual(message["To"].addresses[0].addr_spec, "zoe@client.test")
        self.assertEqual(message["Cc"].addresses[0].addr_spec, "carol@client.test")
        self.assertEqual(recipients, ["carol@client.test", "zoe@client.test"])
        html = message.get_body(("html",)).get_content()
        self.assertIn("Hello Zoe, this is the composer speaking.", html)
        self.assertIn("Alice, via Dovecot", html)
        self.assertIn("Hello Zoe", message.get_body(("plain",)).get_content())
        self.assert_filed_in_sent(row)

    def test_reply(self):
        """a (reply all: recipients), Reply: In-Reply-To / References set, the original quoted."""
        self._inbox()
        self.tour("maildesk_composer_reply", timeout=180)
        row = self.outbox("Re: Budget question")
        self.assertEqual(len(row), 1, "the reply-all closed untouched must leave no draft")
        self.assertEqual(row.state, "sent", row.last_error)
        received = self.received()
        self.assertEqual(len(received), 1)
        message, recipients = received[0]
        self.assertEqual(message["In-Reply-To"], "<budget-question@client.test>")
        self.assertEqual(message["References"].split(), ["<budget-start@client.test>", "<budget-question@client.test>"])
        self.assertEqual(message["To"].addresses[0].addr_spec, "carol@client.test")
        self.assertEqual(recipients, ["carol@client.test"])
        html = message.get_body(("html",)).get_content()
        self.assertIn("We can spend 500 euros.", html)
        self.assertIn("<blockquote", html)
        self.assertIn("How much can we spend on the offsite?", html)
        self.assertIn("wrote:", html)
        self.assertLess(html.index("We can spend 500 euros."), html.index("<blockquote"), "the answer goes on top")

    def test_forward_with_attachment(self):
        """f: the original's attachment goes along; uploaded files too, a removed one not."""
        self._inbox()
        self.tour("maildesk_composer_forward", timeout=180)
        row = self.outbox("Fwd: Quarterly report")
        self.assertEqual(row.state, "sent", row.last_error)
        received = self.received()
        self.assertEqual(len(received), 1)
        message, recipients = received[0]
        self.assertEqual(recipients, ["dave@vendor.test"])
        files = {part.get_filename(): part.get_content() for part in message.iter_attachments()}
        self.assertEqual(sorted(files), ["notes.txt", "report.pdf"])
        self.assertEqual(files["report.pdf"], PDF, "the forwarded attachment must be the original's bytes")
        self.assertEqual(files["notes.txt"].strip(), "Notes for Dave")
        self.assertIn("The report is attached.", message.get_body(("html", "plain")).get_content())

    def test_undo(self):
        """Send, then Undo within the window: the draft comes back, nothing reaches the sink."""
        self.undo_seconds(30)
        self._inbox()
        self.tour("maildesk_composer_undo", timeout=180)
        row = self.outbox("Please do not send")
        self.assertEqual(row.state, "draft")
        self.assertFalse(row.mime, "an undone message keeps no final MIME")
        self.undo_seconds(0)
        self._run_sender()
        self.assertEqual(self.received(), [], "an undone message reached the SMTP server")
