"""The crons, end to end inside Odoo, against the real Dovecot the test command starts.

The test command exports ``MAILDESK_TEST_IMAP`` (JSON: host, port and a
list of [login, password] pairs, one mailbox per test). Without it these
tests are skipped, and say so.
"""

import datetime as dt
import json
import os
import socket
from contextlib import closing
from email.message import EmailMessage
from unittest.mock import patch

from odoo.exceptions import UserError
from odoo.tests import tagged

from .common import MaildeskCase

_ACCOUNT_MODEL = "odoo.addons.maildesk_mail_client.models.mailbox_account.MailboxAccount"


def _imap_server():
    raw = os.environ.get("MAILDESK_TEST_IMAP")
    return json.loads(raw) if raw else None


def _message(number, subject=None):
    msg = EmailMessage()
    msg["From"] = f"Sender {number} <sender{number}@example.com>"
    msg["To"] = "you@example.com"
    msg["Subject"] = subject or f"Message {number}"
    msg["Message-ID"] = f"<odoo-{number}@maildesk.test>"
    msg["Date"] = (dt.datetime(2024, 1, 1, tzinfo=dt.timezone.utc) + dt.timedelta(minutes=number)).strftime(
        "%a, %d %b %Y %H:%M:%S +0000")
    msg.set_content(f"Body {number}")
    return msg.as_bytes()


@tagged("post_install", "-at_install", "maildesk_imap")
class TestImapSyncInOdoo(MaildeskCase):
    _mailbox_slot = 0

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.server = _imap_server()

    def setUp(self):
        super().setUp()
        if not self.server:
            self.skipTest("MAILDESK_TEST_IMAP is not set: run the suite through scripts/test, which starts Dovecot")
        slot = TestImapSyncInOdoo._mailbox_slot
        TestImapSyncInOdoo._mailbox_slot += 1
        self.login, self.password = self.server["users"][slot]
        # The fixture accounts point nowhere; the crons must only see this test's mailbox.
        (self.account_alice | self.account_bob | self.account_shared).sync_enabled = False
        self.imap = self._client()
        self.addCleanup(self.imap.logout)
        self._empty_mailbox()
        self.account = self.env["mailbox.account"].create({
            "name": "Dovecot", "provider": "imap", "user_id": self.alice.id,
            "imap_host": self.server["host"], "imap_port": self.server["port"], "imap_security": "none",
            "imap_login": self.login, "imap_password": self.password,
        })

    def _client(self):
        from imapclient import IMAPClient

        client = IMAPClient(self.server["host"], port=self.server["port"], ssl=False, timeout=10)
        client.login(self.login, self.password)
        return client

    def _empty_mailbox(self):
        for _flags, _delim, name in self.imap.list_folders():
            if name.upper() != "INBOX":
                self.imap.delete_folder(name)
        self.imap.select_folder("INBOX")
        self.imap.delete_messages(self.imap.search("ALL"))
        self.imap.expunge()

    def _index(self, folder="INBOX"):
        rows = self.env["maildesk.message_index"].search([
            ("account_id", "=", self.account.id), ("folder_id.path", "=", folder), ("deleted_on_server", "=", False)])
        return {row.uid: row for row in rows}

    def _server_state(self, folder="INBOX"):
        self.imap.select_folder(folder, readonly=True)
        uids = self.imap.search("ALL")
        fetched = self.imap.fetch(uids, ["FLAGS"]) if uids else {}
        return {uid: b"\\Seen" in data[b"FLAGS"] for uid, data in fetched.items()}

    def test_connect_bootstrap_then_incremental_through_the_crons(self):
        for number in range(1, 121):
            self.imap.append("INBOX", _message(number))
        self.imap.create_folder("Archive")
        self.imap.append("Archive", _message(500, "Old news"))
        Account = self.env["mailbox.account"]
        calls = []

        def record(model, account_id, folder, uid, index_id, is_new):
            calls.append((account_id, folder.path, uid, index_id, is_new))

        cron = self.env.ref("maildesk_mail_client.ir_cron_maildesk_bootstrap")
        progress = self.env["ir.cron.progress"].create({"cron_id": cron.id})
        with patch(f"{_ACCOUNT_MODEL}._maildesk_after_message_index_upserted", record, create=False):
            Account.with_context(ir_cron_progress_id=progress.id)._cron_maildesk_bootstrap()
            # Work remains (the rest of INBOX, Archive): Odoo re-runs the job at once.
            self.assertEqual((progress.done, progress.remaining), (1, 2))
            first = self._index()
            self.assertEqual(len(first), 50, "the first pass indexes the newest 50 of INBOX")
            self.assertEqual(min(first), max(self._server_state()) - 49)
            folders = self.account.folder_ids
            self.assertEqual(set(folders.mapped("path")), {"INBOX", "Archive"})
            self.assertEqual(folders.filtered(lambda f: f.path == "INBOX").role, "inbox")

            Account.with_context(ir_cron_progress_id=progress.id)._cron_maildesk_bootstrap()
            self.assertEqual(progress.remaining, 0)
            self.assertEqual({uid: row.is_seen for uid, row in self._index().items()}, self._server_state())
            self.assertEqual(len(self._index("Archive")), 1)
            self.assertEqual(set(self.account.folder_ids.mapped("sync_state")), {"incremental"})
            self.assertEqual(len(calls), 121)
            self.assertTrue(all(is_new for *_rest, is_new in calls))
            self.assertEqual(len({index_id for *_rest, index_id, _new in calls}), 121)

            # Another client reads two messages, deletes one; new mail arrives.
            calls.clear()
            uids = sorted(self._server_state())
            self.imap.select_folder("INBOX")
            self.imap.add_flags(uids[:2], [b"\\Seen"])
            self.imap.delete_messages(uids[5:6])
            self.imap.expunge()
            self.imap.append("INBOX", _message(121))
            Account._cron_maildesk_imap_incremental()

        self.assertEqual({uid: row.is_seen for uid, row in self._index().items()}, self._server_state())
        self.assertEqual(sorted((uid, is_new) for _a, _f, uid, _i, is_new in calls),
                         sorted([(uids[0], False), (uids[1], False), (max(self._server_state()), True)]))
        self.assertEqual(self.account.auth_state, "ok")
        self.assertFalse(self.account.last_error)
        self.assertTrue(self.account.last_sync_at)

    def test_bad_password_asks_for_reconnect_and_is_skipped(self):
        self.account.imap_password = "wrong"
        self.env["mailbox.account"]._cron_maildesk_imap_incremental()
        self.assertEqual(self.account.auth_state, "reconnect_needed")
        self.assertEqual(self.account.sync_status, "reconnect_needed")
        self.assertIn(self.login, self.account.last_error)
        self.env.cr.execute("UPDATE mailbox_account SET last_error = 'untouched' WHERE id = %s", [self.account.id])
        self.account.invalidate_recordset()
        self.env["mailbox.account"]._cron_maildesk_imap_incremental()
        self.assertEqual(self.account.last_error, "untouched", "a broken account is not retried")
        # Fixing the password clears the state, and the next run syncs.
        self.account.imap_password = self.password
        self.assertEqual(self.account.auth_state, "ok")
        self.env["mailbox.account"]._cron_maildesk_imap_incremental()
        self.assertEqual(self.account.auth_state, "ok")
        self.assertFalse(self.account.last_error)

    def test_dead_server_backs_off(self):
        with closing(socket.socket()) as sock:
            sock.bind(("127.0.0.1", 0))
            dead_port = sock.getsockname()[1]
        self.account.imap_port = dead_port
        self.env["mailbox.account"]._cron_maildesk_imap_incremental()
        self.assertEqual(self.account.auth_state, "ok")
        self.assertEqual(self.account.failure_count, 1)
        self.assertGreater(self.account.backoff_until, dt.datetime.now())
        self.assertEqual(self.account.sync_status, "backoff")
        self.assertIn(str(dead_port), self.account.last_error)

    def test_test_connection_button(self):
        result = self.account.action_test_connection()
        self.assertEqual(result["params"]["type"], "success")
        self.account.imap_password = "wrong"
        with self.assertRaises(UserError) as error:
            self.account.action_test_connection()
        self.assertIn(self.login, str(error.exception))
