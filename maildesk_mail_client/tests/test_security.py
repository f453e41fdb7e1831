from odoo.exceptions import AccessError, ValidationError
from odoo.tests import tagged

from .common import MaildeskCase


@tagged("post_install", "-at_install")
class TestSecurity(MaildeskCase):
    """Each rule of the issue, proved with real users over the ORM."""

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.rows = {}
        for account in (cls.account_alice, cls.account_bob, cls.account_shared):
            folder = cls.env["maildesk.folder"].create(
                {"account_id": account.id, "path": "INBOX", "name": "INBOX", "role": "inbox"})
            message = cls.make_message(folder, 1, subject=f"to {account.name}")
            cache = cls.env["maildesk.ui_cache"].create(
                {"account_id": account.id, "index_id": message.id, "body_html": "<p>hi</p>"})
            queue = cls.env["maildesk.ingest_queue"].create(
                {"account_id": account.id, "index_id": message.id, "message_id": f"<{account.id}@x>"})
            lease = cls.env["maildesk.account_lease"].create(
                {"account_id": account.id, "purpose": "sync", "holder": "test"})
            cls.rows[account] = {"maildesk.folder": folder, "maildesk.message_index": message,
                                 "maildesk.ui_cache": cache, "maildesk.ingest_queue": queue,
                                 "maildesk.account_lease": lease}

    def _visible(self, user, model):
        return self.env[model].with_user(user).search([])

    def test_user_sees_own_and_shared_accounts_only(self):
        self.assertEqual(self._visible(self.alice, "mailbox.account"), self.account_alice | self.account_shared)
        self.assertEqual(self._visible(self.bob, "mailbox.account"), self.account_bob)
        with self.assertRaises(AccessError):
            self.account_alice.with_user(self.bob).read(["name"])

    def test_everything_under_an_account_follows_it(self):
        for model in ("maildesk.folder", "maildesk.message_index", "maildesk.ui_cache",
                      "maildesk.ingest_queue", "maildesk.account_lease"):
            with self.subTest(model=model):
                expected = self.rows[self.account_alice][model] | self.rows[self.account_shared][model]
                self.assertEqual(self._visible(self.alice, model), expected)
                self.assertEqual(self._visible(self.bob, model), self.rows[self.account_bob][model])
                with self.assertRaises(AccessError):
                    self.rows[self.account_alice][model].with_user(self.bob).read(["id"])

    def test_shared_account_stops_leaking_when_unshared(self):
        self.account_shared.is_shared = False
        self.assertEqual(self._visible(self.alice, "mailbox.account"), self.account_alice)
        shared_message = self.rows[self.account_shared]["maildesk.message_index"]
        self.assertNotIn(shared_message, self._visible(self.alice, "maildesk.message_index"))

    def test_access_list_without_share_flag_grants_nothing(self):
        self.account_bob.access_user_ids = self.alice
        self.assertNotIn(self.account_bob, self._visible(self.alice, "mailbox.account"))

    def test_administrator_sees_everything(self):
        accounts = self.account_alice | self.account_bob | self.account_shared
        self.assertEqual(self._visible(self.boss, "mailbox.account") & accounts, accounts)
        messages = self._visible(self.boss, "maildesk.message_index")
        for account in accounts:
            self.assertIn(self.rows[account]["maildesk.message_index"], messages)

    def test_password_is_readable_by_administrators_only(self):
        self.assertEqual(self.account_alice.with_user(self.boss).imap_password, "secret")
        with self.assertRaises(AccessError):
            self.account_alice.with_user(self.alice).read(["imap_password"])
        self.assertNotIn("imap_password", self.account_alice.with_user(self.alice).fields_get())
        # Odoo's OAuth tokens stay with system administrators.
        with self.assertRaises(AccessError):
            self.account_alice.with_user(self.boss).read(["google_gmail_refresh_token"])

    def test_cache_and_queue_rows_belong_to_their_message_account(self):
        # The rules filter on the row's own account_id: a row filed under
        # Alice's account for a message of Bob's must not reach Alice.
        bob_folder = self.rows[self.account_bob]["maildesk.folder"]
        bob_message = self.make_message(bob_folder, 2)
        cache = self.env["maildesk.ui_cache"].create(
            {"account_id": self.account_alice.id, "index_id": bob_message.id, "body_html": "<p>bob's</p>"})
        self.assertEqual(cache.account_id, self.account_bob)
        self.env.flush_all()
        self.env.cr.execute("SELECT account_id FROM maildesk_ui_cache WHERE id = %s", [cache.id])
        self.assertEqual(self.env.cr.fetchone()[0], self.account_bob.id)
        self.assertNotIn(cache, self._visible(self.alice, "maildesk.ui_cache"))
        with self.assertRaises(ValidationError):
            cache.write({"account_id": self.account_alice.id})

        with self.assertRaises(ValidationError):
            self.env["maildesk.ingest_queue"].create(
                {"account_id": self.account_alice.id, "index_id": bob_message.id, "message_id": "<bob-2@x>"})
        queue = self.env["maildesk.ingest_queue"].create({"index_id": bob_message.id, "message_id": "<bob-2@x>"})
        self.assertEqual(queue.account_id, self.account_bob)
        with self.assertRaises(ValidationError):
            queue.write({"account_id": self.account_alice.id})

    def test_users_cannot_write_accounts_or_index(self):
        with self.assertRaises(AccessError):
            self.account_alice.with_user(self.alice).write({"imap_host": "evil.example.com"})
        with self.assertRaises(AccessError):
            self.rows[self.account_alice]["maildesk.message_index"].with_user(self.alice).unlink()
        with self.assertRaises(AccessError):
            self.env["mailbox.account"].with_user(self.alice).create({"name": "mine"})

    def test_trust_cannot_be_planted_for_another_user(self):
        """Record rules are checked before a write only: moving a row to Bob must be refused."""
        trust = self.env["maildesk.trusted_sender"].with_user(self.alice).create({"email": "tracker@evil.example"})
        with self.assertRaises(AccessError):
            trust.write({"user_id": self.bob.id})
        with self.assertRaises(AccessError):
            self.env["maildesk.trusted_sender"].with_user(self.alice).create(
                {"email": "other@evil.example", "user_id": self.bob.id})
        self.assertFalse(self.env["maildesk.trusted_sender"].with_user(self.bob).search([]))

    def test_cached_bodies_are_not_served_by_the_orm(self):
        """The sandboxed reading pane is the only place a body is shown: Odoo's own forms never render one."""
        fields = self.env["maildesk.ui_cache"].with_user(self.alice).fields_get()
        self.assertFalse({"body_html", "body_html_remote", "text_html", "body_text", "raw_message"} & set(fields))
