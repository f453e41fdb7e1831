from odoo.tests.common import TransactionCase, new_test_user

from ..repositories import delivery_key


class MaildeskFixtures:
    """Two MailDesk users, an administrator, and one account of each kind of visibility:

    - ``account_alice``: owned by Alice;
    - ``account_bob``: owned by Bob;
    - ``account_shared``: owned by the admin, shared with Alice only.

    Passwords are the logins (what ``new_test_user`` sets for 8+ characters).
    """

    @classmethod
    def _setup_maildesk(cls):
        cls.env = cls.env(context=dict(cls.env.context, tracking_disable=True))
        cls.alice = new_test_user(cls.env, "maildesk_alice", groups="maildesk_mail_client.group_maildesk_user")
        cls.bob = new_test_user(cls.env, "maildesk_bob", groups="maildesk_mail_client.group_maildesk_user")
        cls.boss = new_test_user(cls.env, "maildesk_boss", groups="maildesk_mail_client.group_maildesk_admin")
        Account = cls.env["mailbox.account"]
        common = {"provider": "imap", "imap_host": "localhost", "imap_port": 1, "imap_security": "none",
                  "imap_login": "x", "imap_password": "secret"}
        cls.account_alice = Account.create({**common, "name": "Alice", "user_id": cls.alice.id})
        cls.account_bob = Account.create({**common, "name": "Bob", "user_id": cls.bob.id})
        cls.account_shared = Account.create({
            **common, "name": "Support", "user_id": cls.boss.id, "is_shared": True,
            "access_user_ids": [(6, 0, cls.alice.ids)],
        })


class MaildeskCase(MaildeskFixtures, TransactionCase):
    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls._setup_maildesk()

    def make_folder(self, account, path="INBOX", role="inbox"):
        return self.env["maildesk.folder"].create({"account_id": account.id, "path": path, "name": path, "role": role})

    @classmethod
    def make_message(cls, folder, uid, **values):
        account = folder.account_id
        return cls.env["maildesk.message_index"].create({
            "account_id": account.id, "folder_id": folder.id, "provider": account.provider,
            "uid": uid, "remote_id": str(uid),
            "delivery_key": delivery_key(account.id, account.provider, folder.id, uid), **values,
        })
