"""The inbox's RPC (issue 7, "list, search and counts"): what each user gets over ``with_user`` calls,
as the web client's orm service makes them.

Alice owns ``account_alice`` and reads ``account_shared``; Bob owns ``account_bob`` only. Bob must
never get a row, a count, a thread or a search hit of Alice's mailboxes, whatever he asks for.
"""

import json
from unittest.mock import patch

from odoo.exceptions import AccessError
from odoo.tests import tagged

from .common import MaildeskCase


@tagged("post_install", "-at_install")
class TestInboxList(MaildeskCase):
    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        Folder = cls.env["maildesk.folder"]

        def folder(account, path, role="other"):
            return Folder.create({"account_id": account.id, "path": path, "name": path.rsplit("/", 1)[-1],
                                  "delimiter": "/", "role": role})

        cls.alice_inbox = folder(cls.account_alice, "INBOX", "inbox")
        cls.alice_projects = folder(cls.account_alice, "INBOX/Projects")
        cls.alice_archive = folder(cls.account_alice, "Archive", "archive")
        cls.bob_inbox = folder(cls.account_bob, "INBOX", "inbox")
        cls.shared_inbox = folder(cls.account_shared, "INBOX", "inbox")

        def message(folder, uid, day, **values):
            values = {"deleted_on_server": False, "is_seen": True, "date": f"2024-03-{day:02d} 10:00:00", **values}
            return cls.make_message(folder, uid, **values)

        # Alice's INBOX: a conversation of three (the newest unread) and two single messages.
        cls.alice_thread = [
            message(cls.alice_inbox, 1, 1, subject="Zanzibar trip", thread_key="t-zanzibar",
                    from_address="Carol <carol@example.com>", to_addresses="alice@example.com"),
            message(cls.alice_inbox, 2, 3, subject="Re: Zanzibar trip", thread_key="t-zanzibar",
                    from_address="Alice <alice@example.com>", to_addresses="carol@example.com"),
            message(cls.alice_inbox, 3, 5, subject="Re: Zanzibar trip", thread_key="t-zanzibar",
                    from_address="Carol <carol@example.com>", to_addresses="alice@example.com", is_seen=False),
        ]
        cls.alice_invoice = message(cls.alice_inbox, 4, 4, subject="Invoice 1234", thread_key="t-invoice",
                                    from_address="Billing <billing@acme.test>", has_attachments=True,
                                    is_flagged=True)
        cls.alice_news = message(cls.alice_inbox, 5, 2, subject="Newsletter", thread_key="t-news",
                                 from_address="News <news@example.org>", is_seen=False)
        cls.alice_gone = message(cls.alice_inbox, 6, 6, subject="Zanzibar deleted", thread_key="t-gone",
                                 from_address="Carol <carol@example.com>")
        cls.alice_gone.sudo().write({"deleted_on_server": True})
        cls.alice_project = message(cls.alice_projects, 1, 7, subject="Zanzibar budget", thread_key="t-budget",
                                    from_address="Dave <dave@example.com>", is_seen=False)
        cls.shared_message = message(cls.shared_inbox, 1, 8, subject="Support zanzibar ticket",
                                     thread_key="t-support", from_address="client@customer.test", is_seen=False)
        # Bob's INBOX: his own mail only.
        cls.bob_messages = [
            message(cls.bob_inbox, uid, uid, subject=f"Bob's note {uid}", thread_key=f"t-bob-{uid}",
                    from_address="Erin <erin@example.com>", is_seen=uid % 2 == 0)
            for uid in range(1, 4)
        ]
        cls.alice_ids = {m.id for m in (*cls.alice_thread, cls.alice_invoice, cls.alice_news, cls.alice_project)}
        cls.bob_ids = {m.id for m in cls.bob_messages}

    # ------------------------------------------------------------------
    # helpers: calls as the web client makes them
    # ------------------------------------------------------------------

    def page(self, user, scope, query="", **kwargs):
        return self.env["maildesk.message_index"].with_user(user).maildesk_page(scope, query, **kwargs)

    def ids(self, user, scope, query="", **kwargs):
        return [row["id"] for row in self.page(user, scope, query, **kwargs)["rows"]]

    def tree(self, user):
        return self.env["mailbox.account"].with_user(user).maildesk_inbox_tree()

    # ------------------------------------------------------------------
    # the folder tree
    # ------------------------------------------------------------------

    def test_the_tree_has_the_readable_accounts_with_their_counts(self):
        tree = self.tree(self.alice)
        accounts = {account["id"]: account for account in tree["accounts"]}
        self.assertEqual(set(accounts), {self.account_alice.id, self.account_shared.id})
        alice = accounts[self.account_alice.id]
        self.assertEqual(
            [(f["path"], f["depth"], f["unread"], f["total"]) for f in alice["folders"]],
            [("INBOX", 0, 2, 5), ("INBOX/Projects", 1, 1, 1), ("Archive", 0, 0, 0)],
            "INBOX first with its subfolder under it; the deleted message is not counted")
        self.assertEqual(alice["sync_status"], self.account_alice.sync_status)
        self.assertEqual(set(alice["folders"][0]), {"id", "name", "path", "role", "depth", "selectable",
                                                    "unread", "total"})
        self.assertEqual(tree["all_inboxes_unread"], 2 + 1, "Alice's INBOX and the shared INBOX")

        bob = self.tree(self.bob)
        self.assertEqual([a["id"] for a in bob["accounts"]], [self.account_bob.id])
        self.assertEqual([(f["unread"], f["total"]) for f in bob["accounts"][0]["folders"]], [(2, 3)])
        self.assertEqual(bob["all_inboxes_unread"], 2)

        boss = self.tree(self.boss)
        self.assertTrue({self.account_alice.id, self.account_bob.id, self.account_shared.id}
                        <= {a["id"] for a in boss["accounts"]}, "an administrator sees every account")

    def test_an_account_shared_later_appears_and_one_unshared_disappears(self):
        self.assertNotIn(self.account_shared.id, [a["id"] for a in self.tree(self.bob)["accounts"]])
        self.account_shared.write({"access_user_ids": [(4, self.bob.id)]})
        self.assertIn(self.account_shared.id, [a["id"] for a in self.tree(self.bob)["accounts"]])
        self.assertIn(self.shared_message.id, self.ids(self.bob, {"all_inboxes": True}))
        self.account_shared.write({"access_user_ids": [(3, self.bob.id)]})
        self.assertNotIn(self.shared_message.id, self.ids(self.bob, {"everywhere": True}))
        with self.assertRaises(AccessError):
            self.page(self.bob, {"folder_id": self.shared_inbox.id})

    # ------------------------------------------------------------------
    # two users: nothing of Alice's ever reaches Bob
    # ------------------------------------------------------------------

    def test_bob_never_gets_alices_rows_counts_threads_or_search_hits(self):
        for scope in ({"everywhere": True}, {"all_inboxes": True}, {"account_id": self.account_bob.id},
                      {"folder_id": self.bob_inbox.id}):
            for threads in (True, False):
                for query in ("", "zanzibar", "from:carol", "is:unread", "subject:zanzibar", "example"):
                    ids = set(self.ids(self.bob, scope, query, threads=threads))
                    self.assertLessEqual(ids, self.bob_ids, f"{scope} {query!r} threads={threads}")
        self.assertEqual(set(self.ids(self.bob, {"everywhere": True}, threads=False)), self.bob_ids)
        # Alice does find them: the searches above were not empty by chance.
        self.assertEqual(set(self.ids(self.alice, {"everywhere": True}, "zanzibar", threads=False)),
                         {*(m.id for m in self.alice_thread), self.alice_project.id, self.shared_message.id})

        for scope in ({"folder_id": self.alice_inbox.id}, {"folder_id": self.alice_projects.id},
                      {"account_id": self.account_alice.id}, {"account_id": self.account_shared.id},
                      {"folder_id": self.shared_inbox.id}):
            with self.assertRaises(AccessError, msg=f"Bob lists {scope}"):
                self.page(self.bob, scope)
            with self.assertRaises(AccessError, msg=f"Bob expands a thread in {scope}"):
                self.env["maildesk.message_index"].with_user(self.bob).maildesk_thread(
                    self.bob_messages[0].id, scope=scope)
        with self.assertRaises(AccessError):
            self.env["maildesk.message_index"].with_user(self.bob).maildesk_thread(self.alice_thread[0].id)
        with self.assertRaises(AccessError):
            self.page(self.bob, {"folder_id": 10**9})  # no such folder: the same answer as someone else's

    def test_a_user_outside_maildesk_gets_nothing(self):
        outsider = self.env["res.users"].create({"name": "Outsider", "login": "maildesk_outsider",
                                                 "groups_id": [(6, 0, [self.env.ref("base.group_user").id])]})
        with self.assertRaises(AccessError):
            self.page(outsider, {"everywhere": True})
        with self.assertRaises(AccessError):
            self.tree(outsider)

    # ------------------------------------------------------------------
    # the list itself
    # ------------------------------------------------------------------

    def test_a_folder_lists_one_row_per_conversation_newest_first(self):
        page = self.page(self.alice, {"folder_id": self.alice_inbox.id})
        rows = page["rows"]
        self.assertIsNone(page["next_cursor"])
        self.assertEqual([row["id"] for row in rows],
                         [self.alice_thread[2].id, self.alice_invoice.id, self.alice_news.id])
        first = rows[0]
        self.assertEqual((first["thread_key"], first["thread_count"], first["thread_unread"]), ("t-zanzibar", 3, 1))
        self.assertEqual(first["date"], "2024-03-05 10:00:00")
        self.assertEqual(set(first) >= {"id", "thread_key", "thread_count", "account_id", "folder_id", "subject",
                                        "from_address", "snippet", "date", "is_seen", "is_flagged",
                                        "has_attachments"}, True)
        self.assertEqual((rows[1]["is_flagged"], rows[1]["has_attachments"], rows[1]["is_seen"]), (True, True, True))

        messages = self.ids(self.alice, {"folder_id": self.alice_inbox.id}, threads=False)
        self.assertEqual(messages, [self.alice_thread[2].id, self.alice_invoice.id, self.alice_thread[1].id,
                                    self.alice_news.id, self.alice_thread[0].id])

        thread = self.env["maildesk.message_index"].with_user(self.alice).maildesk_thread(self.alice_thread[2].id)
        self.assertEqual([row["id"] for row in thread], [m.id for m in self.alice_thread], "oldest first")
        # With the list's scope and query, the rows its count counted.
        unread = self.page(self.alice, {"folder_id": self.alice_inbox.id}, "is:unread")["rows"]
        self.assertEqual([(r["id"], r["thread_count"]) for r in unread],
                         [(self.alice_thread[2].id, 1), (self.alice_news.id, 1)])
        self.assertEqual([row["id"] for row in self.env["maildesk.message_index"].with_user(self.alice)
                          .maildesk_thread(self.alice_thread[0].id, {"folder_id": self.alice_inbox.id}, "is:unread")],
                         [self.alice_thread[2].id])

    def test_every_message_is_reached_page_by_page(self):
        folder = self.env["maildesk.folder"].create({"account_id": self.account_alice.id, "path": "Big",
                                                     "name": "Big", "role": "other"})
        created = [self.make_message(folder, uid, deleted_on_server=False, subject=f"Message {uid}",
                                     thread_key=f"big-{uid // 3}",
                                     date=f"2024-01-{1 + uid % 4:02d} 08:00:00" if uid % 7 else False)
                   for uid in range(1, 24)]
        for threads, expected in ((False, len(created)), (True, len({m.thread_key for m in created}))):
            seen, cursor = [], None
            for _page in range(30):
                page = self.page(self.alice, {"folder_id": folder.id}, cursor=cursor, limit=4, threads=threads)
                seen += page["rows"]
                cursor = json.loads(json.dumps(page["next_cursor"]))  # as it travels over JSON-RPC
                if cursor is None:
                    break
            self.assertEqual(len(seen), expected, f"threads={threads}")
            self.assertEqual(len({row["id"] for row in seen}), expected, "no row twice")
            if not threads:
                self.assertEqual({row["id"] for row in seen}, {m.id for m in created})
            else:
                self.assertEqual(sum(row["thread_count"] for row in seen), len(created))

    def test_search_operators_over_rpc(self):
        inbox = {"folder_id": self.alice_inbox.id}
        self.assertEqual(self.ids(self.alice, inbox, "from:billing", threads=False), [self.alice_invoice.id])
        self.assertEqual(self.ids(self.alice, inbox, "has:attachment is:flagged", threads=False),
                         [self.alice_invoice.id])
        self.assertEqual(self.ids(self.alice, inbox, "is:unread", threads=False),
                         [self.alice_thread[2].id, self.alice_news.id])
        self.assertEqual(self.ids(self.alice, inbox, "zanzi", threads=False), [m.id for m in self.alice_thread][::-1],
                         "the word being typed matches as a prefix")
        self.assertEqual(self.ids(self.alice, inbox, "before:2024-03-03 after:2024-03-02", threads=False),
                         [self.alice_news.id])
        self.assertEqual(self.ids(self.alice, inbox, 'subject:"zanzibar trip" to:carol', threads=False),
                         [self.alice_thread[1].id])
        self.assertEqual(self.ids(self.alice, {"account_id": self.account_alice.id}, "budget"),
                         [self.alice_project.id])
        self.assertEqual(self.ids(self.alice, inbox, 'nosuch:operator "unclosed'), [])

    def test_opening_a_folder_calls_the_prefetch_hook_with_its_top_rows(self):
        self.env["ir.config_parameter"].sudo().set_param("maildesk.prefetch.folder_open_top_n", "2")
        calls = []
        Account = type(self.env["mailbox.account"])
        with patch.object(Account, "_maildesk_enqueue_folder_open_prefetch", autospec=True,
                          side_effect=lambda _self, *args: calls.append((_self.env.uid, *args))):
            first = self.page(self.alice, {"folder_id": self.alice_inbox.id}, limit=2, threads=False)
            self.assertEqual(calls, [(self.alice.id, self.account_alice.id, self.alice_inbox.id,
                                      [self.alice_thread[2].id, self.alice_invoice.id])])
            calls.clear()
            self.page(self.alice, {"folder_id": self.alice_inbox.id}, cursor=first["next_cursor"], limit=2)
            self.page(self.alice, {"folder_id": self.alice_inbox.id}, "zanzibar")
            self.page(self.alice, {"account_id": self.account_alice.id})
            self.page(self.alice, {"all_inboxes": True})
            self.assertEqual(calls, [], "only a folder's first page is a folder being opened")

            self.env["ir.config_parameter"].sudo().set_param("maildesk.prefetch.folder_open_top_n", "30")
            self.page(self.alice, {"folder_id": self.alice_inbox.id})
            self.assertEqual(calls[0][3], [self.alice_thread[2].id, self.alice_invoice.id, self.alice_news.id])

    def test_a_bad_cursor_or_scope_is_refused_cleanly(self):
        from odoo.exceptions import UserError

        with self.assertRaises(UserError):
            self.page(self.alice, {"folder_id": self.alice_inbox.id}, cursor=["not a date", 1])
        with self.assertRaises(UserError):
            self.page(self.alice, {"nowhere": True})
