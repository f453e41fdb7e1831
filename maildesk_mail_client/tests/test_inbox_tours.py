"""The inbox in a real browser: Odoo tours in headless Chromium (static/tests/tours/).

Each test builds its mailbox, then runs one tour as a MailDesk user (Alice, of
``MaildeskFixtures``: she reads her own account and the shared "Support" one,
never Bob's). The tours that read bodies use the Dovecot ``scripts/test``
starts (``MAILDESK_TEST_IMAP``), and the crons to index it.

The browser has no way to talk to the test but the page, so a loopback HTTP
server (``_Loopback``) started by each test stands in for the outside world:
it is the "remote" server of the tracking-pixel and XSS messages, counting
every request it gets, and the tour calls it to mark a moment (``/__mark/x``),
to wait for requests (``/__wait``), or to have the test deliver a new message
to Dovecot (``/__deliver``) while the tour watches the list.

A missing Chrome or websocket-client makes Odoo skip a tour; ``scripts/test``
counts any skipped tour as a failure.
"""

import base64
import datetime as dt
import http.server
import json
import logging
import os
import threading
import time
import urllib.parse
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid
from pathlib import Path
from unittest.mock import patch

from odoo import SUPERUSER_ID, api
from odoo.tests import HttpCase, tagged
from odoo.tests.common import ChromeBrowser, ChromeBrowserException

from ..repositories import delivery_key
from .common import MaildeskFixtures

_logger = logging.getLogger(__name__)

DATA = Path(__file__).parent / "data"
ALICE = "maildesk_alice"

# A 2x2 red PNG, the inline (cid:) image of the HTML message.
PNG = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAIAAAACCAIAAAD91JpzAAAAEklEQVR4nGP4z8DAwMDAxMDAAAAmhwMB0rb1ZQAAAABJRU5ErkJggg==")
PDF = b"%PDF-1.4\n% MailDesk test attachment\n1 0 obj<<>>endobj\ntrailer<<>>\n%%EOF\n"
GIF = base64.b64decode("R0lGODlhAQABAIAAAAAAAP///yH5BAEAAAAALAAAAAABAAEAAAIBRAA7")

#: What a message may never make the browser do (tours and tests look for it).
XSS_MARKER = "MAILDESK-XSS"


def _imap_server():
    raw = os.environ.get("MAILDESK_TEST_IMAP")
    return json.loads(raw) if raw else None


class _Loopback:
    """An HTTP server on 127.0.0.1 that records what it is asked, in order."""

    def __init__(self):
        self.log = []  # (path, monotonic time); marks as "__mark/<name>"
        self.changed = threading.Condition()
        self.on_deliver = None
        loopback = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                loopback._handle(self)

            do_POST = do_GET

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True, name="maildesk loopback")
        self.thread.start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()

    def _record(self, path):
        with self.changed:
            self.log.append(path)
            self.changed.notify_all()

    def _handle(self, request):
        url = urllib.parse.urlsplit(request.path)
        path = url.path
        query = urllib.parse.parse_qs(url.query)
        if path.startswith("/__mark/"):
            self._record(path[2:])
            return self._reply(request, 204)
        if path == "/__wait":
            # Until every path asked for was requested after the mark named by "after".
            wanted = set(query.get("paths", [""])[0].split(","))
            after = query.get("after", [None])[0]
            ok = self.wait_for(wanted, after=after, timeout=float(query.get("timeout", ["15"])[0]))
            return self._reply(request, 204 if ok else 504)
        if path == "/__deliver":
            try:
                self.on_deliver()
            finally:
                self._reply(request, 204)
            return None
        self._record(path)
        return self._reply(request, 200, GIF, "image/gif")

    @staticmethod
    def _reply(request, status, body=b"", content_type="text/plain"):
        request.send_response(status)
        request.send_header("Content-Type", content_type)
        request.send_header("Cache-Control", "no-store")
        request.send_header("Content-Length", str(len(body)))
        request.end_headers()
        if body:
            request.wfile.write(body)

    def requests_between(self, start=None, end=None):
        """The non-mark paths requested after mark ``start`` and before mark ``end``."""
        with self.changed:
            log = list(self.log)
        begin = log.index(f"_mark/{start}") + 1 if start else 0
        stop = log.index(f"_mark/{end}") if end else len(log)
        return [path for path in log[begin:stop] if not path.startswith("_mark/")]

    def wait_for(self, wanted, after=None, timeout=15.0):
        deadline = time.monotonic() + timeout
        with self.changed:
            while True:
                log = self.log
                begin = log.index(f"_mark/{after}") + 1 if after and f"_mark/{after}" in log else 0
                if wanted <= set(log[begin:]):
                    return True
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self.changed.wait(left)


class _WatchfulBrowser(ChromeBrowser):
    """Chrome that fails the tour on any JavaScript dialog, and on any console call of a message.

    Odoo's runner fails a tour on console.error and uncaught exceptions of the
    page; a message's ``alert()`` or ``console.log()`` must fail it too. A
    sandboxed frame runs in a process of its own, out of reach of the page's
    devtools session: every frame is attached (``Target.setAutoAttach``), held
    until its console and exceptions are watched, then let run. Dialogs are
    dismissed so the page does not hang on them.
    """

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.frame_sessions = []
        self._handlers["Page.javascriptDialogOpening"] = self._handle_dialog
        self._handlers["Target.attachedToTarget"] = self._handle_attached
        self._websocket_request("Target.setAutoAttach", params={
            "autoAttach": True, "waitForDebuggerOnStart": True, "flatten": True})

    def _send_to(self, session_id, method, params=None):
        self.ws.send(json.dumps({"id": next(self._request_id), "sessionId": session_id, "method": method,
                                 "params": params or {}}))

    def _handle_attached(self, sessionId, targetInfo, waitingForDebugger=False, **kw):
        self.frame_sessions.append(targetInfo.get("url"))
        for method in ("Runtime.enable", "Page.enable"):
            self._send_to(sessionId, method)
        self._send_to(sessionId, "Target.setAutoAttach",
                      {"autoAttach": True, "waitForDebuggerOnStart": True, "flatten": True})
        if waitingForDebugger:
            self._send_to(sessionId, "Runtime.runIfWaitingForDebugger")

    def _fail(self, message):
        if not self._result.done():
            self._result.set_exception(ChromeBrowserException(message))

    def _handle_dialog(self, message="", type="", **kw):
        self._websocket_send("Page.handleJavaScriptDialog", params={"accept": False})
        self._fail(f"A JavaScript {type} dialog opened: {message!r}")

    def _handle_console(self, type, args=None, stackTrace=None, **kw):
        texts = [str(arg.get("value", arg.get("description", ""))) for arg in args or []]
        if any(XSS_MARKER in text for text in texts):
            self._fail(f"A message called console.{type}: {' '.join(texts)!r}")
        return super()._handle_console(type, args=args, stackTrace=stackTrace, **kw)


@tagged("post_install", "-at_install", "maildesk_tours")
class InboxTourCase(MaildeskFixtures, HttpCase):
    """Fixtures and helpers of the inbox tours."""

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls._setup_maildesk()

    def setUp(self):
        super().setUp()
        self.loopback = _Loopback()
        self.addCleanup(self.loopback.close)

    # -- the index, written directly (tours that need no body) ---------------------

    def folder(self, account, path, role="other"):
        return self.env["maildesk.folder"].create({
            "account_id": account.id, "path": path, "name": path.rsplit("/", 1)[-1], "role": role,
            "role_sequence": 0 if role == "inbox" else 10, "delimiter": "/",
        })

    def messages(self, folder, rows):
        """Index rows in ``folder``: dicts of field values; ``uid`` is the IMAP UID."""
        account = folder.account_id
        return self.env["maildesk.message_index"].create([{
            "account_id": account.id, "folder_id": folder.id, "provider": account.provider,
            "remote_id": str(row["uid"]), "message_id": f"<{folder.id}.{row['uid']}@maildesk.test>",
            "delivery_key": delivery_key(account.id, account.provider, folder.id, row["uid"]),
            "is_seen": True, **row,
        } for row in rows])

    # -- the browser --------------------------------------------------------------

    def tour(self, name, url="/odoo/maildesk", login=ALICE, timeout=120, **kwargs):
        """Run a tour with the loopback server's address in ``window.maildeskTest``."""
        options = {"stepDelay": 0, "keepWatchBrowser": False, "debug": False, "startUrl": url}
        code = (f"window.maildeskTest = {json.dumps({'loopback': self.loopback.url})}; "
                f"odoo.startTour({name!r}, {json.dumps(options)})")
        with patch("odoo.tests.common.ChromeBrowser", _WatchfulBrowser):
            self.start_tour(url, name, login=login, timeout=timeout, code=code, **kwargs)


class TestInboxTours(InboxTourCase):
    """Tours on index rows written by the test: list, tree, threads, selection, keyboard, search."""

    def _mailboxes(self):
        inbox = self.folder(self.account_alice, "INBOX", "inbox")
        archive = self.folder(self.account_alice, "Archive", "archive")
        support = self.folder(self.account_shared, "INBOX", "inbox")
        bob = self.folder(self.account_bob, "INBOX", "inbox")
        base = dt.datetime(2024, 3, 1, 9, 0)
        self.messages(inbox, [
            {"uid": 1, "subject": "Welcome to MailDesk", "from_address": "MailDesk <hello@maildesk.test>",
             "snippet": "Your inbox, in Odoo", "date": base, "is_seen": False, "thread_key": "welcome"},
            {"uid": 2, "subject": "Budget 2024", "from_address": "Erin <erin@example.com>", "snippet": "First draft",
             "date": base - dt.timedelta(days=3), "thread_key": "budget"},
            {"uid": 3, "subject": "Re: Budget 2024", "from_address": "Frank <frank@example.com>",
             "snippet": "Looks good", "date": base - dt.timedelta(days=2), "is_seen": False, "thread_key": "budget"},
            {"uid": 4, "subject": "Re: Budget 2024", "from_address": "Erin <erin@example.com>",
             "snippet": "Final numbers", "date": base - dt.timedelta(days=1), "is_seen": False,
             "thread_key": "budget"},
            {"uid": 5, "subject": "Flagged news", "from_address": "News <news@example.com>", "snippet": "Read me",
             "date": base - dt.timedelta(days=4), "is_flagged": True, "has_attachments": True, "thread_key": "news"},
        ])
        self.messages(archive, [
            {"uid": 1, "subject": "Old archived thing", "from_address": "Gus <gus@example.com>",
             "date": base - dt.timedelta(days=400), "thread_key": "old"},
        ])
        self.messages(support, [
            {"uid": 1, "subject": "Customer question", "from_address": "Carol <carol@client.test>",
             "date": base - dt.timedelta(hours=5), "is_seen": False, "thread_key": "customer"},
        ])
        self.messages(bob, [
            {"uid": 1, "subject": "Bob's secret", "from_address": "Mallory <m@example.com>",
             "date": base, "is_seen": False, "thread_key": "secret"},
        ])
        self.account_shared.sudo().write({
            "auth_state": "reconnect_needed", "last_error": "Connection refused by imap.support.test",
        })

    def test_open_inbox(self):
        """From the apps menu to the inbox: tree, counts, sync state, threads, selection, keyboard."""
        self._mailboxes()
        self.tour("maildesk_inbox_open", url="/odoo")

    def test_scroll_to_oldest_of_2000(self):
        """Every message of a 2,000-message folder is reachable by scrolling (keyset pages)."""
        big = self.folder(self.account_alice, "Big")
        base = dt.datetime(2023, 1, 1)
        self.messages(big, [{
            "uid": n, "subject": f"Bulk message {n:04d}", "from_address": f"Sender {n} <s{n}@example.com>",
            "snippet": f"Number {n}", "date": base + dt.timedelta(minutes=n), "thread_key": f"bulk-{n}",
            "is_seen": n % 7 != 0,
        } for n in range(1, 2001)])
        self.tour("maildesk_inbox_scroll_oldest", timeout=240)

    def test_search_with_operators(self):
        inbox = self.folder(self.account_alice, "INBOX", "inbox")
        support = self.folder(self.account_shared, "INBOX", "inbox")
        bob = self.folder(self.account_bob, "INBOX", "inbox")
        carol = "Carol Client <carol@client.test>"
        self.messages(inbox, [
            {"uid": 1, "subject": "Quarterly report Q1", "from_address": carol, "to_addresses": "team@example.com",
             "snippet": "See the file", "has_attachments": True, "date": dt.datetime(2024, 1, 15, 10),
             "thread_key": "q1"},
            {"uid": 2, "subject": "Lunch on Friday", "from_address": carol, "to_addresses": "team@example.com",
             "snippet": "Pizza?", "is_seen": False, "date": dt.datetime(2024, 3, 10, 12), "thread_key": "lunch"},
            {"uid": 3, "subject": "Quarterly report draft", "from_address": "Dave <dave@vendor.test>",
             "to_addresses": "Alice <alice@example.com>", "snippet": "numbers inside", "is_flagged": True,
             "date": dt.datetime(2024, 2, 20, 8), "thread_key": "draft"},
        ])
        self.messages(support, [
            {"uid": 1, "subject": "Quarterly report for support", "from_address": carol,
             "to_addresses": "support@example.com", "date": dt.datetime(2024, 2, 5, 9), "thread_key": "support"},
        ])
        self.messages(bob, [
            {"uid": 1, "subject": "Quarterly report of Bob", "from_address": carol, "to_addresses": "bob@example.com",
             "has_attachments": True, "is_flagged": True, "is_seen": False, "date": dt.datetime(2024, 2, 6),
             "thread_key": "bob"},
        ])
        self.tour("maildesk_inbox_search")


class DovecotTourCase(InboxTourCase):
    """Tours on a Dovecot mailbox of Alice's, indexed by the crons (also the composer's tours)."""

    #: The last test mailbox of scripts/test's Dovecot (TestImapSyncInOdoo takes the first ones).
    MAILBOX = -1

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.server = _imap_server()

    def setUp(self):
        super().setUp()
        if not self.server:
            self.skipTest("MAILDESK_TEST_IMAP is not set: run the suite through scripts/test, which starts Dovecot")
        from imapclient import IMAPClient

        login, password = self.server["users"][self.MAILBOX]
        self.imap = IMAPClient(self.server["host"], port=self.server["port"], ssl=False, timeout=10)
        self.imap.login(login, password)
        self.addCleanup(self.imap.logout)
        for _flags, _delimiter, name in self.imap.list_folders():
            if name.upper() != "INBOX":
                self.imap.delete_folder(name)
        self.imap.select_folder("INBOX")
        if uids := self.imap.search("ALL"):
            self.imap.delete_messages(uids)
            self.imap.expunge()
        # The fixture accounts point nowhere: the crons must only see this mailbox.
        (self.account_alice | self.account_bob | self.account_shared).sync_enabled = False
        self.account = self.env["mailbox.account"].create({
            "name": "Dovecot", "email": "alice@example.com", "provider": "imap", "user_id": self.alice.id,
            "imap_host": self.server["host"], "imap_port": self.server["port"], "imap_security": "none",
            "imap_login": login, "imap_password": password,
        })

    def append(self, message, folder="INBOX"):
        self.imap.append(folder, message.as_bytes())

    def sync(self, env=None):
        env = env or self.env
        Account = env["mailbox.account"]
        Account._cron_maildesk_bootstrap()
        Account._cron_maildesk_imap_incremental()

    @staticmethod
    def email(subject, html=None, text=None, sender="Carol Client <carol@client.test>", minutes=0):
        msg = EmailMessage()
        msg["From"] = sender
        msg["To"] = "Alice <alice@example.com>"
        msg["Cc"] = "Team <team@example.com>"
        msg["Subject"] = subject
        msg["Message-ID"] = make_msgid(domain="maildesk.test")
        sent = dt.datetime(2024, 5, 1, 9, tzinfo=dt.timezone.utc) + dt.timedelta(minutes=minutes)
        msg["Date"] = format_datetime(sent)
        msg.set_content(text or f"{subject} (plain text)")
        if html is not None:
            msg.add_alternative(html, subtype="html")
        return msg


class TestInboxToursOnDovecot(DovecotTourCase):
    """Tours that read bodies: the messages are in Dovecot, indexed by the crons."""

    def test_read_html_with_cid_image_and_attachment(self):
        msg = self.email("Report with a logo", html=(
            '<html><body><h1 class="greeting">Hello Alice</h1>'
            '<p>Our logo: <img id="logo" alt="logo" src="cid:logo@maildesk.test"></p>'
            '<p><a href="https://example.com/report">The report online</a></p></body></html>'))
        msg.get_payload()[1].add_related(PNG, "image", "png", cid="<logo@maildesk.test>", filename="logo.png")
        msg.add_attachment(PDF, maintype="application", subtype="pdf", filename="report.pdf")
        forwarded = self.email("The forwarded one", text="Forwarded body\n\n> an old quote\n> more of it\n",
                               sender="Dave <dave@vendor.test>")
        msg.add_attachment(forwarded)  # message/rfc822
        self.append(msg)
        self.sync()
        self.tour("maildesk_inbox_read_html")

    def test_new_message_appears_live(self):
        for n in range(40):
            self.append(self.email(f"Earlier message {n:02d}", minutes=n))
        self.sync()
        alice_channel = None

        def deliver():
            # Runs in the loopback server's thread while the tour waits: Dovecot receives a
            # message, the cron indexes it and notifies the readers, the bus wakes the browser.
            started = time.monotonic()
            self.append(self.email("Live message from Dovecot", minutes=60))
            with self.registry.cursor() as cr:
                self.sync(api.Environment(cr, SUPERUSER_ID, {}))
            synced = time.monotonic()
            woken = self._dispatch_bus(alice_channel)
            _logger.info("delivered in %.1fs, bus in %.1fs, %d websocket(s) woken",
                         synced - started, time.monotonic() - synced, woken)

        from odoo.addons.bus.models.bus import channel_with_db, hashable
        from odoo.addons.bus.websocket import WebsocketConnectionHandler

        alice_channel = hashable(channel_with_db(self.registry.db_name, self.alice.partner_id))
        self.loopback.on_deliver = deliver
        # Odoo refuses websockets under tests unless told otherwise (as bus/tests/common.py does).
        with patch.object(WebsocketConnectionHandler, "websocket_allowed", return_value=True):
            self.tour("maildesk_inbox_live")

    def _dispatch_bus(self, channel):
        """What PostgreSQL's NOTIFY does outside tests: wake the websockets of the channel.

        The test cursor never commits, so Odoo's bus never hears of the notification
        (see bus/tests/common.py, trigger_notification_dispatching).
        """
        from odoo.addons.bus.models.bus import dispatch

        deadline = time.monotonic() + 10
        while not dispatch._channels_to_ws.get(channel) and time.monotonic() < deadline:
            time.sleep(0.1)  # the page's websocket has not subscribed yet
        websockets = list(dispatch._channels_to_ws.get(channel, ()))
        for websocket in websockets:
            websocket.trigger_notification_dispatching()
        return len(websockets)

    def test_hostile_html_never_runs(self):
        """XSS vectors (tests/data/hostile/*.html) in Chromium: nothing runs, nothing is requested."""
        vectors = sorted((DATA / "hostile").glob("*.html"))
        self.assertTrue(vectors)
        for minutes, path in enumerate(vectors):
            html = path.read_text().replace("LOOPBACK", self.loopback.url)
            self.append(self.email(f"Hostile {path.stem}", html=html, minutes=minutes))
        self.sync()
        self.tour("maildesk_inbox_hostile", timeout=240)
        self.assertEqual(self.loopback.requests_between(), [],
                         "a hostile message made the browser request something")

    def test_remote_content_blocked_until_allowed(self):
        url = self.loopback.url
        self.append(self.email("Tracking pixel", html=(
            f'<p>Newsletter</p><img src="{url}/pixel.gif" width="1" height="1" alt="">'
            f'<div style="background-image: url(\'{url}/css-background.gif\'); height: 20px">styled</div>'
            f'<img srcset="{url}/srcset.gif 1x" alt="srcset">'
            f'<link rel="stylesheet" href="{url}/link.css">')))
        self.sync()
        self.tour("maildesk_inbox_remote")
        requests = self.loopback.requests_between
        self.assertEqual(requests(None, "show-once"), [], "remote content was requested before the user allowed it")
        self.assertLessEqual({"/pixel.gif", "/css-background.gif", "/srcset.gif"}, set(requests("show-once", "reopen")))
        self.assertEqual(requests("reopen", "trust"), [], "shown once is once: opened again, it is blocked again")
        self.assertIn("/pixel.gif", requests("trust"), "a trusted sender's remote content loads")
        self.assertNotIn("/link.css", requests(), "a remote stylesheet must never load")
        trusted = self.env["maildesk.trusted_sender"].sudo().search([("user_id", "=", self.alice.id)])
        self.assertEqual(trusted.mapped("email"), ["carol@client.test"])


class TestTourWatcher(InboxTourCase):
    """The watch on messages is not blind: a frame's console call or dialog does fail a tour.

    Positive controls for test_hostile_html_never_runs: the same sandboxed
    srcdoc frame as the reading pane's, but allowed to run scripts.
    """

    def _run_frame(self, sandbox, script):
        code = (
            "const frame = document.createElement('iframe');"
            f"frame.setAttribute('sandbox', {json.dumps(sandbox)});"
            f"frame.srcdoc = {json.dumps('<script>' + script + '</' + 'script>')};"
            "document.body.appendChild(frame);"
            "setTimeout(() => console.log('test successful'), 3000);"
        )
        with patch("odoo.tests.common.ChromeBrowser", _WatchfulBrowser):
            self.browser_js("/odoo", code, login=ALICE, timeout=60)

    def test_console_call_in_a_sandboxed_frame_fails(self):
        with self.assertRaisesRegex(AssertionError, "A message called console.log"):
            self._run_frame("allow-scripts", f"console.log('{XSS_MARKER} control')")

    def test_alert_in_a_sandboxed_frame_fails(self):
        with self.assertRaisesRegex(AssertionError, "dialog opened"):
            self._run_frame("allow-scripts allow-modals", "alert('control')")
