"""Compose → Send → the sender cron, for a Gmail and an Outlook account, against the local Gmail and Graph.

The fake servers are ``tests/harness/gmail_server.py`` and ``graph_server.py``
of the repository, started in-process (scripts/test puts the repository on
``PYTHONPATH``); the production transports talk to them over real sockets.
Each test counts the sends on the server: once, and the Sent row indexed
at once, not doubled by the next sync.
"""

from odoo.tests import tagged

from .common import MaildeskCase

try:
    from tests.harness.gmail_server import GmailServer
    from tests.harness.graph_server import GraphServer
except ImportError:  # not run from the repository (scripts/test sets PYTHONPATH)
    GmailServer = GraphServer = None


# A mixin: the TestCase it is mixed into has what pylint does not find here.
class _OAuthSending:  # pylint: disable=no-member
    """The tests both providers pass; a subclass connects its account (not a TestCase: never run alone)."""

    def setUp(self):
        super().setUp()
        if GmailServer is None:
            self.skipTest("tests.harness is not importable: run the suite through scripts/test")
        (self.account_alice | self.account_bob | self.account_shared).sync_enabled = False
        params = self.env["ir.config_parameter"].sudo()
        params.set_param("maildesk.undo_send_seconds", 0)
        self.Account = self.env["mailbox.account"]
        self.account = self._connect(params)
        self.Outbox = self.env["maildesk.outbox"].with_user(self.alice)
        cron = self.env.ref("maildesk_mail_client.ir_cron_maildesk_bootstrap")
        progress = self.env["ir.cron.progress"].create({"cron_id": cron.id})
        self.Account.with_context(ir_cron_progress_id=progress.id)._cron_maildesk_bootstrap()
        self.sent_folder = self.account.folder_ids.filtered(lambda folder: folder.role == "sent")
        self.assertEqual(len(self.sent_folder), 1, "discovery made the Sent folder")

    def _send(self, **values):
        draft = self.Outbox.maildesk_compose("new", account_id=self.account.id)
        self.Outbox.maildesk_save_draft(draft["id"], {"subject": "Hello", "body_html": "<p>Hi <b>Bob</b></p>",
                                                      "email_to": "Bob <bob@example.net>", **values})
        self.Outbox.maildesk_send(draft["id"])
        self._run_sender()
        return self.Outbox.browse(draft["id"])

    def _run_sender(self):
        self.env["maildesk.outbox"]._cron_maildesk_send_outbox()
        self.env.invalidate_all()

    def _sent_rows(self, message_id):
        return self.env["maildesk.message_index"].search([
            ("folder_id", "=", self.sent_folder.id), ("message_id", "=", message_id),
            ("deleted_on_server", "=", False)])

    def test_sent_once_shown_in_sent_at_once_and_not_doubled_by_the_sync(self):
        row = self._send(email_bcc="carol@example.org")
        self.assertEqual(row.state, "sent", row.last_error)
        self.assertEqual(self._server_sends().get(row.message_id), 1)
        self.assertTrue(row.sent_filed)
        indexed = self._sent_rows(row.message_id)
        self.assertEqual(indexed.mapped("remote_id"), [row.sent_remote_id], "in the Sent list before any sync")
        self._run_sender()  # nothing left to do: never twice
        self._sync()
        self._sync()
        self.assertEqual(len(self._sent_rows(row.message_id)), 1, "the sync found the same message, not a new one")
        self.assertEqual(sum(self._server_sends().values()), 1)

    def test_refused_message_fails_with_the_servers_reason(self):
        self._fail_next_send(400)
        row = self._send()
        self.assertEqual(row.state, "failed")
        self.assertEqual(row.failure_kind, "permanent")
        self.assertIn("400", row.last_error)
        self.assertIn("Retry, or Discard", row.last_error)
        self.assertFalse(self._server_sends())

    def test_throttled_send_waits_then_goes_once(self):
        self._fail_next_send(429)
        row = self._send()
        self.assertEqual(row.state, "queued")
        self.assertEqual(row.failure_kind, "temporary")
        self.assertIn("429", row.last_error)
        row.sudo().next_attempt_at = False  # the backoff is over
        self._run_sender()
        self.assertEqual(row.state, "sent", row.last_error)
        self.assertEqual(self._server_sends().get(row.message_id), 1)

    def test_auth_lost_fails_with_the_reconnect_message(self):
        self.world.expire_access_tokens()
        self.world.revoke_refresh_token()
        self.account.sudo().write(self._forget_access_token())
        row = self._send()
        self.assertEqual(row.state, "failed")
        self.assertEqual(row.failure_kind, "permanent")
        self.assertIn("reconnect", row.last_error.lower())
        self.assertFalse(self._server_sends())


@tagged("post_install", "-at_install", "maildesk_gmail")
class TestGmailSending(_OAuthSending, MaildeskCase):
    allow_inherited_tests_method = True

    def _connect(self, params):
        self.server = GmailServer().start()
        self.addCleanup(self.server.stop)
        self.world = self.server.world
        params.set_param("google_gmail_client_id", "maildesk-test")
        params.set_param("google_gmail_client_secret", "maildesk-secret")
        params.set_param("maildesk.gmail_api_endpoint", self.server.url)
        params.set_param("maildesk.google_token_endpoint", self.server.token_url)
        return self.Account.create({
            "name": "Gmail", "provider": "gmail", "email": self.world.user_email, "user_id": self.alice.id,
            "google_gmail_refresh_token": self.world.refresh_token,
        })

    def _sync(self):
        self.Account._cron_maildesk_gmail_incremental()
        self.env.invalidate_all()

    def _server_sends(self):
        import email

        counts = {}
        for gmail_id in self.world.message_ids("SENT"):
            message_id = str(email.message_from_bytes(self.world.raw_of(gmail_id))["Message-ID"]).strip()
            counts[message_id] = counts.get(message_id, 0) + 1
        return counts

    def _fail_next_send(self, status):
        self.world.fail_next("gmail.users.messages.send", status)

    def _forget_access_token(self):
        return {"google_gmail_access_token": False, "google_gmail_access_token_expiration": 0}


@tagged("post_install", "-at_install", "maildesk_outlook")
class TestOutlookSending(_OAuthSending, MaildeskCase):
    allow_inherited_tests_method = True

    def _connect(self, params):
        self.server = GraphServer().start()
        self.addCleanup(self.server.stop)
        self.world = self.server.world
        params.set_param("microsoft_outlook_client_id", self.world.client_id)
        params.set_param("microsoft_outlook_client_secret", self.world.client_secret)
        params.set_param("maildesk.graph_url", self.server.url)
        params.set_param("maildesk.microsoft_authority", self.server.authority)
        params.set_param("maildesk.microsoft_ca_file", self.server.ca_file)
        return self.Account.create({
            "name": "Outlook", "provider": "outlook", "email": self.world.user_email, "user_id": self.alice.id,
            "microsoft_outlook_refresh_token": self.world.refresh_token,
        })

    def _sync(self):
        self.Account._cron_maildesk_outlook_delta()
        self.env.invalidate_all()

    def _server_sends(self):
        return {key: value for key, value in self.world.sent_internet_ids().items() if key}

    def _fail_next_send(self, status):
        self.world.fail_next(r"/me/messages/[^/]+/send$", status)

    def _forget_access_token(self):
        return {"microsoft_outlook_access_token": False, "microsoft_outlook_access_token_expiration": 0}

    def test_no_draft_is_left_behind(self):
        row = self._send()
        self.assertEqual(row.state, "sent", row.last_error)
        self.assertFalse(self.world.message_ids(self.world.well_known("drafts")))
