"""Reading a message over HTTP: the reading pane's routes, with two real users and their record rules.

Alice owns one account and reads a shared one; Bob owns another. Every
route (the message, a part, an inline image, trusting a sender) is called
over HTTP as each of them: Alice gets her messages, Bob gets nothing of
hers — not the body, not an attachment, not an inline image, not a trust
made through her message. The bodies come from the real cache table;
one test opens a message from the real Dovecot the test command starts.
"""

import base64
import datetime as dt
import json
import os
import uuid
from email.message import EmailMessage
from email.policy import SMTP

from odoo.exceptions import AccessError
from odoo.tests import tagged
from odoo.tests.common import HttpCase, JsonRpcException

from ..application.use_cases.read_message import render
from ..orm.read_context import cid_url
from ..repositories import delivery_key
from ..repositories.ui_cache import UiCacheRepository
from .common import MaildeskFixtures

PNG = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg==")
PDF = b"%PDF-1.4 quarterly report\n" * 40
TRACKER = "http://tracker.example/open.gif"
IMAP_SLOT = 6  # MAILDESK_TEST_IMAP's mailbox for this module (test_imap_sync_odoo.py takes the first ones)


def newsletter(subject="Quarterly news", sender="News Desk <news@example.com>", message_id=None):
    inner = EmailMessage(policy=SMTP)
    inner["From"] = "Original <orig@example.org>"
    inner["To"] = "news@example.com"
    inner["Subject"] = "The forwarded one"
    inner.set_content("Forwarded text")
    inner.add_attachment(b"inner bytes", maintype="application", subtype="octet-stream", filename="inner.bin")

    msg = EmailMessage(policy=SMTP)
    msg["From"] = sender
    msg["To"] = "Alice <alice@example.com>"
    msg["Subject"] = subject
    msg["Date"] = "Tue, 14 May 2024 09:30:00 +0000"
    msg["Message-ID"] = message_id or f"<{uuid.uuid4().hex}@maildesk.test>"
    msg.set_content("Hello,\nsee https://example.com/q2\n> an older quote\n")
    msg.add_alternative(
        '<p onclick="alert(1)">Hello <b>reader</b></p><img src="cid:logo@maildesk.test" alt="logo">'
        f'<img src="{TRACKER}" width="1" height="1"><script>alert(1)</script>', subtype="html")
    msg.get_payload()[1].add_related(PNG, maintype="image", subtype="png", cid="<logo@maildesk.test>",
                                     disposition="inline", filename="logo.png")
    msg.add_attachment(PDF, maintype="application", subtype="pdf", filename="report.pdf")
    msg.add_attachment(inner)
    return msg.as_bytes()


def index_row(env, account, uid, raw, folder=None):
    folder = folder or env["maildesk.folder"].search([("account_id", "=", account.id), ("path", "=", "INBOX")])
    folder = folder or env["maildesk.folder"].create(
        {"account_id": account.id, "path": "INBOX", "name": "INBOX", "role": "inbox"})
    return env["maildesk.message_index"].create({
        "account_id": account.id, "folder_id": folder.id, "provider": account.provider, "uid": uid,
        "remote_id": str(uid), "delivery_key": delivery_key(account.id, account.provider, folder.id, uid),
        "subject": "indexed", "from_address": "News Desk <news@example.com>", "size": len(raw),
    })


@tagged("post_install", "-at_install")
class TestInboxRead(MaildeskFixtures, HttpCase):
    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls._setup_maildesk()
        cls.msg_alice = cls._cached_message(cls.account_alice, "Alice's news")
        cls.msg_bob = cls._cached_message(cls.account_bob, "Bob's news")
        cls.msg_shared = cls._cached_message(cls.account_shared, "Support news")

    @classmethod
    def _cached_message(cls, account, subject):
        """An index row whose body is in the cache (the accounts point at no server)."""
        raw = newsletter(subject)
        message = index_row(cls.env, account, len(cls.env["maildesk.message_index"].search([])) + 1, raw)
        now = dt.datetime.now(dt.timezone.utc).replace(tzinfo=None)
        body = render(raw, cid_url(message.id))
        cls.env.flush_all()
        UiCacheRepository(cls.env.cr).store(message.id, body, raw, now, now + dt.timedelta(hours=72))
        cls.env.invalidate_all()
        return message

    def _login(self, user):
        self.authenticate(user.login, user.login)

    def _open(self, message, **params):
        return self.make_jsonrpc_request(f"/maildesk/message/{message.id}", params)

    # -- Alice reads ----------------------------------------------------------------------

    def test_alice_reads_her_message(self):
        self._login(self.alice)
        view = self._open(self.msg_alice)
        self.assertEqual(view["id"], self.msg_alice.id)
        self.assertEqual(view["subject"], "Alice's news")
        self.assertEqual(view["from"], "News Desk <news@example.com>")
        self.assertEqual(view["to"], "Alice <alice@example.com>")
        self.assertEqual(view["date"], "2024-05-14 09:30:00")
        self.assertIn("<b>reader</b>", view["html"])
        self.assertNotIn("onclick", view["html"])
        self.assertNotIn("<script", view["html"])
        self.assertNotIn("tracker.example", view["html"])
        self.assertEqual(view["blocked_remote"], 1)
        self.assertFalse(view["sender_trusted"])
        self.assertEqual(view["sender_email"], "news@example.com")
        self.assertIn(f'src="/maildesk/message/{self.msg_alice.id}/cid/logo@maildesk.test"', view["html"])
        self.assertIn('href="https://example.com/q2"', view["text_html"])
        self.assertIn("<details", view["text_html"])
        # the inline logo is in the body, not in the list; the PDF and the forwarded message are
        by_name = {part["filename"]: part for part in view["attachments"]}
        self.assertEqual(set(by_name), {"report.pdf", "The forwarded one.eml"})
        pdf = by_name["report.pdf"]
        self.assertEqual((pdf["size"], pdf["content_type"]), (len(PDF), "application/pdf"))
        self.assertTrue(by_name["The forwarded one.eml"]["is_message"])

        download = self.url_open(pdf["url"])
        self.assertEqual(download.status_code, 200)
        self.assertEqual(download.content, PDF)
        self.assertTrue(download.headers["Content-Disposition"].startswith("attachment"))
        self.assertIn("sandbox", download.headers["Content-Security-Policy"])
        self.assertEqual(download.headers["X-Content-Type-Options"], "nosniff")

        image = self.url_open(f"/maildesk/message/{self.msg_alice.id}/cid/logo@maildesk.test")
        self.assertEqual(image.status_code, 200)
        self.assertEqual(image.content, PNG)
        self.assertEqual(image.headers["Content-Type"].split(";")[0], "image/png")
        self.assertNotIn("attachment", image.headers.get("Content-Disposition", ""))

        self.assertEqual(self.url_open(f"/maildesk/message/{self.msg_alice.id}/part/9").status_code, 404)
        self.assertEqual(self.url_open(f"/maildesk/message/{self.msg_alice.id}/cid/nobody@x").status_code, 404)

    def test_nested_message_opens(self):
        self._login(self.alice)
        view = self._open(self.msg_alice, part_id="3")
        self.assertEqual(view["subject"], "The forwarded one")
        self.assertEqual(view["text"], "Forwarded text\n")
        (attachment,) = view["attachments"]
        self.assertEqual((attachment["part_id"], attachment["filename"]), ("3.2", "inner.bin"))
        self.assertEqual(self.url_open(attachment["url"]).content, b"inner bytes")
        with self.assertRaises(JsonRpcException):
            self._open(self.msg_alice, part_id="1.1")  # text, not a message

    def test_alice_reads_the_shared_account(self):
        self._login(self.alice)
        self.assertEqual(self._open(self.msg_shared)["subject"], "Support news")

    # -- Bob does not ---------------------------------------------------------------------

    def test_bob_cannot_read_alices_body_parts_images_or_trust(self):
        self._login(self.bob)
        self.assertEqual(self._open(self.msg_bob)["subject"], "Bob's news")  # his own: yes
        for message in (self.msg_alice, self.msg_shared):
            with self.subTest(message=message.subject):
                with self.assertRaises(JsonRpcException) as caught:
                    self._open(message)
                self.assertEqual(str(caught.exception), "odoo.exceptions.MissingError")
                with self.assertRaises(JsonRpcException):
                    self._open(message, part_id="3")
                for url in (f"/maildesk/message/{message.id}/part/2",
                            f"/maildesk/message/{message.id}/part/3.2",
                            f"/maildesk/message/{message.id}/cid/logo@maildesk.test"):
                    response = self.url_open(url)
                    self.assertEqual(response.status_code, 404, url)
                    self.assertNotIn(PNG, response.content)
                    self.assertNotIn(b"quarterly report", response.content)
                with self.assertRaises(JsonRpcException):
                    self.make_jsonrpc_request("/maildesk/trust_sender", {"index_id": message.id})
        self.assertFalse(self.env["maildesk.trusted_sender"].sudo().search([("user_id", "=", self.bob.id)]))
        # nor through the ORM: the cached rows of Alice's accounts are not Bob's to read
        caches = self.env["maildesk.ui_cache"].with_user(self.bob).search([])
        self.assertEqual(caches.index_id, self.msg_bob)
        with self.assertRaises(AccessError):
            self.env["maildesk.ui_cache"].sudo().search(
                [("index_id", "=", self.msg_alice.id)]).with_user(self.bob).read(["body_html"])

    def test_a_message_that_does_not_exist(self):
        self._login(self.alice)
        missing = self.msg_bob.id + 100000
        with self.assertRaises(JsonRpcException):
            self.make_jsonrpc_request(f"/maildesk/message/{missing}", {})
        self.assertEqual(self.url_open(f"/maildesk/message/{missing}/part/2").status_code, 404)

    def test_anonymous_visitors_get_nothing(self):
        self.authenticate(None, None)
        response = self.url_open(f"/maildesk/message/{self.msg_alice.id}/part/2", allow_redirects=False)
        self.assertNotEqual(response.status_code, 200)
        self.assertNotIn(b"quarterly report", response.content)

    # -- remote content and trust -------------------------------------------------------------

    def test_show_once_and_trust_are_per_user(self):
        self._login(self.alice)
        once = self._open(self.msg_alice, remote=True)
        self.assertIn(TRACKER, once["html"])
        self.assertEqual(once["blocked_remote"], 0)
        self.assertNotIn(TRACKER, self._open(self.msg_alice)["html"])  # once means once

        result = self.make_jsonrpc_request("/maildesk/trust_sender", {"index_id": self.msg_alice.id})
        self.assertEqual(result, {"email": "news@example.com", "trusted": True})
        self.make_jsonrpc_request("/maildesk/trust_sender", {"index_id": self.msg_alice.id})  # idempotent
        trusted = self._open(self.msg_alice)
        self.assertTrue(trusted["sender_trusted"])
        self.assertIn(TRACKER, trusted["html"])
        rows = self.env["maildesk.trusted_sender"].sudo().search([("email", "=", "news@example.com")])
        self.assertEqual(rows.user_id, self.alice)

        # Alice's trust is hers: Bob, reading his own mail from the same sender, still sees it blocked
        self._login(self.bob)
        bobs = self._open(self.msg_bob)
        self.assertFalse(bobs["sender_trusted"])
        self.assertNotIn(TRACKER, bobs["html"])
        self.assertEqual(bobs["blocked_remote"], 1)

    def test_trusted_sender_rules(self):
        Trusted = self.env["maildesk.trusted_sender"]
        mine = Trusted.with_user(self.alice).create({"email": "Friend <Friend@Example.com>"})
        self.assertEqual((mine.email, mine.user_id), ("friend@example.com", self.alice))
        self.assertFalse(Trusted.with_user(self.bob).search([]))
        self.assertFalse(Trusted.with_user(self.boss).search([]))  # administrators too: own rows only
        with self.assertRaises(AccessError):
            mine.with_user(self.bob).read(["email"])
        with self.assertRaises(AccessError):
            mine.with_user(self.bob).unlink()
        with self.assertRaises(AccessError):
            Trusted.with_user(self.bob).create({"email": "x@example.com", "user_id": self.alice.id})

    # -- the cache ---------------------------------------------------------------------------

    def test_daily_cleanup_drops_expired_bodies(self):
        self.env.flush_all()
        self.env.cr.execute("UPDATE maildesk_ui_cache SET expires_at = now() AT TIME ZONE 'UTC' - interval '1 hour' "
                            "WHERE index_id = %s", [self.msg_bob.id])
        self.env["maildesk.ui_cache"]._cron_maildesk_cache_cleanup()
        self.env.invalidate_all()
        left = self.env["maildesk.ui_cache"].search([]).index_id
        self.assertNotIn(self.msg_bob, left)
        self.assertIn(self.msg_alice, left)

    def test_read_parameters(self):
        params = self.env["ir.config_parameter"].sudo()
        self.assertEqual(params.get_param("maildesk.cache_ttl_hours"), "72")
        self.assertEqual(params.get_param("maildesk.cache_max_bytes"), str(25 * 1024 * 1024))
        self.assertEqual(params.get_param("maildesk.cache_max_total_bytes"), str(2 * 1024 ** 3))

    def test_daily_cleanup_keeps_the_cache_under_its_total_size(self):
        self.env.flush_all()
        # Bob's body fetched first, then the shared one, then Alice's
        for hours, message in ((3, self.msg_bob), (2, self.msg_shared), (1, self.msg_alice)):
            self.env.cr.execute("UPDATE maildesk_ui_cache SET fetched_at = now() AT TIME ZONE 'UTC' - %s * "
                                "interval '1 hour' WHERE index_id = %s", [hours, message.id])
        caches = self.env["maildesk.ui_cache"].search([])
        sizes = {cache.index_id: cache.raw_size for cache in caches}
        self.env["ir.config_parameter"].sudo().set_param(
            "maildesk.cache_max_total_bytes", sizes[self.msg_alice] + sizes[self.msg_shared])
        self.env["maildesk.ui_cache"]._cron_maildesk_cache_cleanup()
        self.assertEqual(self.env["maildesk.ui_cache"].search([]).index_id, self.msg_alice | self.msg_shared)

    def test_a_big_attachment_downloads_whole(self):
        data = os.urandom(3 * 1024 * 1024 + 7)
        msg = EmailMessage(policy=SMTP)
        msg["From"] = "News Desk <news@example.com>"
        msg["Subject"] = "Big"
        msg.set_content("See attached.")
        msg.add_attachment(data, maintype="application", subtype="octet-stream", filename="données été.bin")
        raw = msg.as_bytes()
        message = index_row(self.env, self.account_alice, 900, raw)
        now = dt.datetime.now(dt.timezone.utc).replace(tzinfo=None)
        self.env.flush_all()
        UiCacheRepository(self.env.cr).store(message.id, render(raw, cid_url(message.id)), raw, now,
                                             now + dt.timedelta(hours=1))
        self._login(self.alice)
        (part,) = self._open(message)["attachments"]
        self.assertEqual(part["size"], len(data))
        download = self.url_open(part["url"], timeout=60)
        self.assertEqual(download.status_code, 200)
        self.assertEqual(download.content, data)
        self.assertEqual(int(download.headers["Content-Length"]), len(data))
        self.assertEqual(download.headers["Content-Disposition"],
                         "attachment; filename*=UTF-8''donn%C3%A9es%20%C3%A9t%C3%A9.bin")
        self.assertEqual(download.headers["X-Content-Type-Options"], "nosniff")
        self.assertIn("sandbox", download.headers["Content-Security-Policy"])

    # -- the folder tree's counts --------------------------------------------------------------

    def test_tree_counts_only_the_folders_asked(self):
        inbox = self.msg_alice.folder_id
        archive = self.env["maildesk.folder"].create(
            {"account_id": self.account_alice.id, "path": "Archive", "name": "Archive", "role": "archive"})
        index_row(self.env, self.account_alice, 901, b"x", archive)
        Account = self.env["mailbox.account"].with_user(self.alice)
        full = Account.maildesk_inbox_tree()
        self.assertFalse(full["partial"])
        counts = {folder["id"]: (folder["unread"], folder["total"])
                  for account in full["accounts"] for folder in account["folders"]}
        self.assertEqual(counts[archive.id], (1, 1))
        self.assertEqual(full["all_inboxes_unread"], 2)  # Alice's inbox and the shared one

        some = Account.maildesk_inbox_tree(folder_ids=[archive.id, self.msg_bob.folder_id.id])
        self.assertTrue(some["partial"])
        self.assertIsNone(some["all_inboxes_unread"])
        partial = {folder["id"]: (folder["unread"], folder["total"])
                   for account in some["accounts"] for folder in account["folders"]}
        self.assertEqual(set(partial), set(counts))  # the same tree; Bob's folder is not in it
        self.assertEqual(partial[archive.id], (1, 1))
        self.assertEqual(partial[inbox.id], (None, None))  # not counted: the client keeps its own
        self.assertEqual(Account.maildesk_inbox_tree(folder_ids=[])["partial"], True)


@tagged("post_install", "-at_install", "maildesk_imap")
class TestInboxReadFromDovecot(MaildeskFixtures, HttpCase):
    """Opening a message that is not cached: fetched from the real Dovecot, without marking it read."""

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls._setup_maildesk()
        raw = os.environ.get("MAILDESK_TEST_IMAP")
        cls.server = json.loads(raw) if raw else None

    def setUp(self):
        super().setUp()
        if not self.server:
            self.skipTest("MAILDESK_TEST_IMAP is not set: run the suite through scripts/test, which starts Dovecot")
        from imapclient import IMAPClient

        login, password = self.server["users"][IMAP_SLOT]
        self.imap = IMAPClient(self.server["host"], port=self.server["port"], ssl=False, timeout=10)
        self.imap.login(login, password)
        self.addCleanup(self.imap.logout)
        self.path = f"MaildeskRead{uuid.uuid4().hex[:8]}"
        self.imap.create_folder(self.path)
        self.addCleanup(self._drop_folder)
        self.account = self.env["mailbox.account"].create({
            "name": "Dovecot reader", "provider": "imap", "user_id": self.alice.id, "sync_enabled": False,
            "imap_host": self.server["host"], "imap_port": self.server["port"], "imap_security": "none",
            "imap_login": login, "imap_password": password,
        })

    def _drop_folder(self):
        self.imap.select_folder("INBOX", readonly=True)
        self.imap.delete_folder(self.path)

    def test_open_fetches_from_dovecot_once_and_leaves_it_unread(self):
        message_id = f"<{uuid.uuid4().hex}@maildesk.test>"
        raw = newsletter("From Dovecot", message_id=message_id)
        self.imap.append(self.path, raw)
        self.imap.select_folder(self.path, readonly=True)
        (uid,) = self.imap.search("ALL")
        folder = self.env["maildesk.folder"].create(
            {"account_id": self.account.id, "path": self.path, "name": self.path, "role": "other"})
        message = index_row(self.env, self.account, uid, raw, folder)
        message.message_id = message_id

        self.authenticate(self.alice.login, self.alice.login)
        view = self.make_jsonrpc_request(f"/maildesk/message/{message.id}", {})
        self.assertEqual(view["subject"], "From Dovecot")
        self.assertEqual(view["blocked_remote"], 1)
        self.assertIn(f"/maildesk/message/{message.id}/cid/logo@maildesk.test", view["html"])
        cache = self.env["maildesk.ui_cache"].search([("index_id", "=", message.id)])
        self.assertEqual(cache.account_id, self.account)
        self.assertEqual(cache.raw_size, len(raw))
        pdf = next(part for part in view["attachments"] if part["filename"] == "report.pdf")
        self.assertEqual(self.url_open(pdf["url"]).content, PDF)

        flags = self.imap.get_flags([uid])[uid]
        self.assertNotIn(b"\\Seen", flags)

        # Bob cannot make MailDesk fetch it for him either
        self.authenticate(self.bob.login, self.bob.login)
        with self.assertRaises(JsonRpcException):
            self.make_jsonrpc_request(f"/maildesk/message/{message.id}", {})
