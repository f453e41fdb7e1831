"""Opening messages as the reading pane does, on a real Dovecot and a real PostgreSQL.

``ReadWorld`` indexes a mailbox with the real engine (``SyncWorld``), then
builds the read flow's ports the way Odoo does: the cache read on the
caller's connection (REPEATABLE READ, like a request's cursor), the fill in a
transaction of its own on another connection, and the production IMAP
adapter, wrapped only to count its ``fetch_raw`` calls (the server is still
asked, for real). The engine tests and ``bench_read.py`` share it.
"""

import base64
import contextlib
import threading
import time
from email.message import EmailMessage
from email.policy import SMTP

from maildesk_mail_client.application.use_cases.read_message import ReadPorts, ReadSettings, open_message
from maildesk_mail_client.providers.imap.mailbox import ImapMailbox
from maildesk_mail_client.repositories.ui_cache import UiCacheRepository

from .engine import UtcClock
from .sync_world import SyncWorld, imap_config

PNG = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg==")


def html_message(size=100_000, subject="A newsletter", message_id="<read-1@maildesk.test>") -> bytes:
    """About ``size`` bytes of HTML mail: text and HTML alternatives, an inline image, an attachment,
    a tracking pixel."""
    paragraph = ("<p style=\"color:#333;font-family:Arial\">Lorem ipsum dolor sit amet, "
                 "<a href=\"https://example.com/article\">consectetur</a> adipiscing elit.</p>\n")
    body = paragraph * max(1, (size - 2000) // len(paragraph) // 2)
    msg = EmailMessage(policy=SMTP)
    msg["From"] = "News <news@example.com>"
    msg["To"] = "Reader <reader@example.com>"
    msg["Subject"] = subject
    msg["Date"] = "Tue, 14 May 2024 09:30:00 +0000"
    msg["Message-ID"] = message_id
    msg.set_content("Lorem ipsum dolor sit amet.\n" * max(1, (size - 2000) // 28 // 2))
    msg.add_alternative(
        f'<html><body><img src="cid:logo@maildesk.test" alt="logo">{body}'
        '<img src="http://tracker.example/open.gif" width="1" height="1"></body></html>', subtype="html")
    msg.get_payload()[1].add_related(PNG, maintype="image", subtype="png", cid="<logo@maildesk.test>",
                                     disposition="inline", filename="logo.png")
    msg.add_attachment(b"report " * 200, maintype="application", subtype="pdf", filename="report.pdf")
    return msg.as_bytes()


class CountingMailbox:
    """The real ImapMailbox; ``fetch_raw`` calls are counted (and may be slowed, to widen a race)."""

    def __init__(self, mailbox, world):
        self._mailbox = mailbox
        self._world = world

    def fetch_raw(self, folder, remote_id):
        raw = self._mailbox.fetch_raw(folder, remote_id)
        with self._world.counter_lock:
            self._world.fetches += 1
        if self._world.fetch_delay:
            time.sleep(self._world.fetch_delay)
        return raw

    def close(self):
        self._mailbox.close()


class ShiftedClock(UtcClock):
    def __init__(self):
        self.shift = None

    def now(self):
        now = super().now()
        return now + self.shift if self.shift else now


class ReadWorld:
    def __init__(self, connect, mailbox, settings=None):
        self.connect = connect
        self.mailbox = mailbox
        self.sync = SyncWorld(connect, mailbox)
        self.settings = settings or ReadSettings()
        self.clock = ShiftedClock()
        self.fetches = 0
        self.fetch_delay = 0.0
        self.counter_lock = threading.Lock()
        self.lock_fill = True  # False: the same flow without the advisory lock (to show what it prevents)

    # -- the mailbox ---------------------------------------------------------------

    def append(self, raw, folder="INBOX", flags=()):
        client = self.mailbox.client()
        try:
            client.append(folder, raw, flags=flags)
        finally:
            client.logout()

    def index_rows(self):
        """Index the mailbox with the real engine; {uid: index id} of INBOX."""
        self.sync.bootstrap_all()
        return {row["uid"]: row["id"] for row in self.sync.rows()}

    def open_mailbox(self, account_id):
        assert account_id == self.sync.account_id
        return CountingMailbox(ImapMailbox.open_account(imap_config(self.mailbox)), self)

    # -- the ports, as one request builds them ---------------------------------------

    @contextlib.contextmanager
    def fill_transaction(self):
        conn = self.connect()
        try:
            cache = UiCacheRepository(conn.cursor())
            if not self.lock_fill:
                cache.lock = lambda index_id: None
            yield cache
            conn.commit()
        except BaseException:
            conn.rollback()
            raise
        finally:
            conn.close()

    def ports(self, conn):
        return ReadPorts(cache=UiCacheRepository(conn.cursor()), fill=self.fill_transaction,
                         mailboxes=self.open_mailbox, clock=self.clock, settings=self.settings)

    def location(self, index_id, conn=None):
        conn = conn or self.sync.conn
        location = UiCacheRepository(conn.cursor()).locate(index_id)
        conn.commit()
        return location

    def open(self, index_id, conn=None, with_raw=False):
        """One open, as a request: its own connection and transaction, ended afterwards."""
        own = conn is None
        conn = conn or self.connect()
        try:
            location = UiCacheRepository(conn.cursor()).locate(index_id)
            opened = open_message(self.ports(conn), location, cid_url(index_id), with_raw=with_raw)
            conn.commit()
            return opened
        finally:
            if own:
                conn.close()

    def open_concurrently(self, index_id, count=10):
        """``count`` requests opening one message at once, each on its own connection; their results."""
        barrier = threading.Barrier(count)
        results, errors = [None] * count, []

        def request(slot):
            conn = self.connect()
            try:
                # As a request does: its transaction (and REPEATABLE READ snapshot) starts
                # with the access checks, before the body is looked for.
                location = UiCacheRepository(conn.cursor()).locate(index_id)
                barrier.wait(timeout=30)
                results[slot] = open_message(self.ports(conn), location, cid_url(index_id))
                conn.commit()
            except BaseException as error:
                errors.append(error)
            finally:
                conn.close()

        threads = [threading.Thread(target=request, args=(slot,)) for slot in range(count)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=120)
        if errors:
            raise errors[0]
        return results

    def cached_rows(self):
        cr = self.sync.conn.cursor()
        cr.execute("SELECT index_id, account_id, raw_size, expires_at - fetched_at FROM maildesk_ui_cache "
                   "ORDER BY index_id")
        rows = cr.fetchall()
        self.sync.conn.commit()
        return rows


def cid_url(index_id):
    return lambda content_id: f"/maildesk/message/{index_id}/cid/{content_id}"
