"""What another user can reach over JSON-RPC, for accounts of every provider.

The record rules are the same for IMAP, Gmail and Outlook accounts, but
Gmail files one message in several label folders and its inbox reads go
through other folders (All Mail, Spam, Trash): each way in is asked here
over HTTP, logged in as a real user, as the web client would.
"""

from odoo.tests import HttpCase, tagged
from odoo.tests.common import JsonRpcException

from ..repositories import delivery_key
from .common import MaildeskFixtures


@tagged("post_install", "-at_install")
class TestRecordRulesOverRpc(MaildeskFixtures, HttpCase):
    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls._setup_maildesk()
        Account = cls.env["mailbox.account"]
        cls.accounts = {}
        for provider in ("gmail", "outlook"):
            account = Account.create({"name": f"Alice {provider}", "provider": provider,
                                      "user_id": cls.alice.id, "sync_enabled": False})
            folders = [cls.env["maildesk.folder"].create({
                "account_id": account.id, "path": path, "name": path, "role": role, "remote_id": remote_id})
                for path, role, remote_id in (("INBOX", "inbox", "INBOX"), ("All Mail", "all", "ALL"))]
            for folder in folders:
                cls.env["maildesk.message_index"].create({
                    "account_id": account.id, "folder_id": folder.id, "provider": provider,
                    "remote_id": "18c0ffee", "subject": f"Alice's {provider} secret",
                    "delivery_key": delivery_key(account.id, provider, folder.id, "18c0ffee"),
                })
            cls.accounts[provider] = (account, folders)

    def _call(self, model, method, *args, **kwargs):
        return self.make_jsonrpc_request("/web/dataset/call_kw", {
            "model": model, "method": method, "args": list(args), "kwargs": kwargs})

    def test_another_user_reaches_nothing_of_alices_oauth_accounts(self):
        self.authenticate("maildesk_bob", "maildesk_bob")
        for provider, (account, folders) in self.accounts.items():
            with self.subTest(provider=provider):
                self.assertEqual(self._call("mailbox.account", "search_read", [("id", "=", account.id)],
                                            fields=["name"]), [])
                self.assertEqual(self._call("maildesk.message_index", "search_read",
                                            [("account_id", "=", account.id)], fields=["subject"]), [])
                for scope in ({"folder_id": folders[0].id}, {"account_id": account.id}):
                    with self.assertRaises(JsonRpcException):
                        self._call("maildesk.message_index", "maildesk_page", scope)
                everywhere = self._call("maildesk.message_index", "maildesk_page", {"everywhere": True})
                self.assertNotIn(f"Alice's {provider} secret", [row["subject"] for row in everywhere["rows"]])
                tree = self._call("mailbox.account", "maildesk_inbox_tree")
                self.assertNotIn(account.id, [a["id"] for a in tree["accounts"]])

    def test_the_owner_reads_a_gmail_message_once_in_her_account(self):
        self.authenticate("maildesk_alice", "maildesk_alice")
        account, _folders = self.accounts["gmail"]
        rows = self._call("maildesk.message_index", "maildesk_page", {"account_id": account.id})["rows"]
        self.assertEqual([row["subject"] for row in rows], ["Alice's gmail secret"],
                         "a message in two labels is listed once in its account")
        outlook, _folders = self.accounts["outlook"]
        rows = self._call("maildesk.message_index", "maildesk_page", {"account_id": outlook.id})["rows"]
        self.assertEqual(len(rows), 2, "other providers are read whole: the label rule is Gmail's only")
