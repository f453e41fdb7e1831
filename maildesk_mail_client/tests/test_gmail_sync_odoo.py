"""A Gmail account synced by the real crons, against the local Gmail of the test harness.

The local Gmail (``tests/harness/gmail_server.py`` in the repository) is a
real HTTP server on loopback that speaks Gmail v1 and Google's token
endpoint; the production adapter (google-api-python-client) talks to it
unchanged, pointed there by ``maildesk.gmail_api_endpoint`` and
``maildesk.google_token_endpoint``. The test command puts the repository on
``PYTHONPATH``; without it these tests are skipped, and say so.
"""

import datetime as dt
from email.message import EmailMessage

from odoo.tests import tagged

from .common import MaildeskCase

try:
    from tests.harness.gmail_server import GmailServer
except ImportError:  # not run from the repository (scripts/test sets PYTHONPATH)
    GmailServer = None


def _message(number, subject=None):
    msg = EmailMessage()
    msg["From"] = f"Sender {number} <sender{number}@example.com>"
    msg["To"] = "user@example.com"
    msg["Subject"] = subject or f"Gmail {number}"
    msg["Message-ID"] = f"<gmail-odoo-{number}@maildesk.test>"
    msg["Date"] = (dt.datetime(2024, 1, 1, tzinfo=dt.timezone.utc) + dt.timedelta(minutes=number)).strftime(
        "%a, %d %b %Y %H:%M:%S +0000")
    msg.set_content(f"Body {number}")
    return msg.as_bytes()


@tagged("post_install", "-at_install", "maildesk_gmail")
class TestGmailSyncInOdoo(MaildeskCase):
    def setUp(self):
        super().setUp()
        if GmailServer is None:
            self.skipTest("tests.harness is not importable: run the suite through scripts/test")
        self.server = GmailServer()
        self.server.start()
        self.addCleanup(self.server.stop)
        self.world = self.server.world
        params = self.env["ir.config_parameter"].sudo()
        params.set_param("google_gmail_client_id", "maildesk-test")
        params.set_param("google_gmail_client_secret", "maildesk-secret")
        params.set_param("maildesk.gmail_api_endpoint", self.server.url)
        params.set_param("maildesk.google_token_endpoint", self.server.token_url)
        # The fixture accounts point nowhere; the crons must only see this test's mailbox.
        (self.account_alice | self.account_bob | self.account_shared).sync_enabled = False
        self.account = self.env["mailbox.account"].create({
            "name": "Gmail", "provider": "gmail", "email": self.world.user_email, "user_id": self.alice.id,
            "google_gmail_refresh_token": self.world.refresh_token,
        })
        self.Account = self.env["mailbox.account"]

    def _rows(self, label_id):
        folder = self.account.folder_ids.filtered(lambda f: f.remote_id == label_id)
        rows = self.env["maildesk.message_index"].search([("folder_id", "=", folder.id),
                                                          ("deleted_on_server", "=", False)])
        return {row.remote_id: row for row in rows}

    def _bootstrap(self):
        cron = self.env.ref("maildesk_mail_client.ir_cron_maildesk_bootstrap")
        progress = self.env["ir.cron.progress"].create({"cron_id": cron.id})
        self.Account.with_context(ir_cron_progress_id=progress.id)._cron_maildesk_bootstrap()
        return progress

    def test_connect_bootstrap_then_history_through_the_crons(self):
        work = self.world.add_label("Work")
        ids = [self.world.add_message(_message(n), labels=("INBOX", "UNREAD") + ((work,) if n % 10 == 0 else ()))
               for n in range(1, 81)]

        progress = self._bootstrap()
        self.assertEqual(len(self._rows("INBOX")), 50, "the first pass indexes the newest 50 of INBOX")
        self.assertEqual(set(self._rows("INBOX")), set(ids[-50:]))
        self.assertGreater(progress.remaining, 0, "more to do: Odoo re-runs the job at once")
        for _ in range(10):
            if not self._bootstrap().remaining:
                break
        self.assertEqual(set(self._rows("INBOX")), set(ids))
        self.assertEqual(set(self._rows(work)), {i for n, i in enumerate(ids, 1) if n % 10 == 0})
        self.assertEqual(self._rows("INBOX")[ids[0]].folder_id.role, "inbox")
        self.assertTrue(self.account.gmail_history_id, "the history cursor was taken before listing")

        # Another client reads one message, stars another, labels a third, deletes a fourth; new mail arrives.
        self.world.modify(ids[0], remove=["UNREAD"])
        self.world.modify(ids[1], add=["STARRED"])
        self.world.modify(ids[2], add=[work])
        self.world.delete(ids[3])
        new = self.world.add_message(_message(200), labels=("INBOX", "UNREAD"))
        self.Account._cron_maildesk_gmail_incremental()

        inbox = self._rows("INBOX")
        self.assertEqual(set(inbox), set(ids) - {ids[3]} | {new})
        self.assertTrue(inbox[ids[0]].is_seen)
        self.assertTrue(inbox[ids[1]].is_flagged)
        self.assertTrue(self._rows(work)[ids[2]].is_seen is False)
        self.assertIn(ids[2], self._rows(work))
        self.assertNotIn(ids[3], self._rows("ALL"))
        self.assertEqual(self.account.auth_state, "ok")
        self.assertFalse(self.account.last_error)
        self.assertEqual(str(self.account.gmail_history_id), str(self.world.history_id))

    def test_revoked_grant_asks_for_reconnect_with_what_to_do(self):
        self.world.add_message(_message(1))
        self.world.revoke_refresh_token()
        self._bootstrap()
        self.assertEqual(self.account.auth_state, "reconnect_needed")
        self.assertIn("Connect Gmail", self.account.last_error)
        self.assertNotIn(self.world.refresh_token, self.account.last_error or "")

    def test_rotated_refresh_token_is_kept(self):
        self.world.rotate_refresh_tokens = True
        self.world.add_message(_message(1))
        self._bootstrap()
        self.assertEqual(self.account.google_gmail_refresh_token, self.world.refresh_token)
        # The next run signs in with the rotated token (the first one is refused now).
        self.account.google_gmail_access_token = False
        self.world.add_message(_message(2))
        self.Account._cron_maildesk_gmail_incremental()
        self.assertEqual(self.account.auth_state, "ok")
        self.assertEqual(len(self._rows("INBOX")), 2)

    def test_test_connection_signs_in_through_the_api(self):
        result = self.account.action_test_connection()
        self.assertEqual(result["params"]["type"], "success")
        self.assertIn(self.world.user_email, result["params"]["message"])
