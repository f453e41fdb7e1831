"""``maildesk_ui_cache``: message bodies, raw and rendered, kept for a while.

A row holds the message as the server sent it (``raw_message``, bytea) and
what the reading pane shows (headers, the sanitized HTML with and without
remote content, the plain text and its HTML, the parts). It expires at
``expires_at``; the daily cron deletes expired rows (:meth:`purge_expired`).

Filling is serialized per message by a transaction-level advisory lock
(``pg_advisory_xact_lock(NAMESPACE, index_id)``): the first opener fetches
from the server and stores the row; the others wait on the lock, then find
the row. The lock goes with the transaction that stores the row, so the row
is committed when a waiter gets the lock. That transaction runs at READ
COMMITTED (:func:`account_lease._read_committed`): each statement then sees
what was committed before it started, which is what a waiter needs after
its wait; at REPEATABLE READ its snapshot could be older than the row.
"""

import datetime as dt
import json

from ..application.use_cases.read_message import CachedBody, MessageLocation
from .account_lease import _read_committed
from .folder import FolderRepository

TABLE = "maildesk_ui_cache"

#: the first key of the advisory lock ("MDUC"), so our locks never meet another module's
LOCK_NAMESPACE = 0x4D445543

#: every column this module writes; an Odoo test checks they are model fields
COLUMNS = (
    "index_id", "account_id", "headers_json", "body_html", "body_html_remote", "remote_blocked", "body_text",
    "text_html", "attachments_json", "raw_message", "raw_size", "fetched_at", "expires_at",
)

_RENDERED = ("headers_json", "body_html", "body_html_remote", "remote_blocked", "body_text", "text_html",
             "attachments_json", "raw_size", "fetched_at", "expires_at")
_GET = f"SELECT {', '.join(_RENDERED)}, NULL FROM {TABLE} WHERE index_id = %s AND expires_at > %s"
_GET_WITH_RAW = f"SELECT {', '.join(_RENDERED)}, raw_message FROM {TABLE} WHERE index_id = %s AND expires_at > %s"


def _json(value):
    return json.loads(value) if isinstance(value, str) else value


class UiCacheRepository:
    def __init__(self, cr):
        self.cr = cr

    # -- the fill --------------------------------------------------------------------

    def begin_fill(self):
        """Make the transaction about to start READ COMMITTED (see the module's docstring)."""
        _read_committed(self.cr)

    def lock(self, index_id: int) -> None:
        """Wait until no other transaction fills this message; held until this transaction ends."""
        self.cr.execute("SELECT pg_advisory_xact_lock(%s, %s)", [LOCK_NAMESPACE, index_id])

    def get(self, index_id: int, now: dt.datetime, with_raw: bool = False) -> CachedBody | None:
        """The row of a message, unless it expired by ``now``."""
        self.cr.execute(_GET_WITH_RAW if with_raw else _GET, [index_id, now])
        row = self.cr.fetchone()
        if row is None:
            return None
        (headers, html, html_remote, blocked, text, text_html, attachments, raw_size, fetched_at, expires_at,
         raw) = row
        return CachedBody(headers=_json(headers) or {}, html=html, html_remote=html_remote,
                          remote_blocked=blocked or 0, text=text, text_html=text_html,
                          attachments=_json(attachments) or [], raw_size=raw_size or 0, fetched_at=fetched_at,
                          expires_at=expires_at, raw=bytes(raw) if raw is not None else None)

    def store(self, index_id: int, body: CachedBody, raw: bytes, fetched_at: dt.datetime,
              expires_at: dt.datetime) -> None:
        """Insert or replace the row; its account is the index row's, whatever the caller thinks."""
        self.cr.execute(
            f"""
            INSERT INTO {TABLE} (index_id, account_id, headers_json, body_html, body_html_remote, remote_blocked,
                                 body_text, text_html, attachments_json, raw_message, raw_size, fetched_at,
                                 expires_at, create_date, write_date)
            SELECT i.id, i.account_id, %(headers)s::jsonb, %(html)s, %(html_remote)s, %(blocked)s, %(text)s,
                   %(text_html)s, %(attachments)s::jsonb, %(raw)s, %(raw_size)s, %(fetched)s, %(expires)s,
                   %(fetched)s, %(fetched)s
              FROM maildesk_message_index i
             WHERE i.id = %(index)s
            ON CONFLICT (index_id) DO UPDATE SET
                headers_json = EXCLUDED.headers_json, body_html = EXCLUDED.body_html,
                body_html_remote = EXCLUDED.body_html_remote, remote_blocked = EXCLUDED.remote_blocked,
                body_text = EXCLUDED.body_text, text_html = EXCLUDED.text_html,
                attachments_json = EXCLUDED.attachments_json, raw_message = EXCLUDED.raw_message,
                raw_size = EXCLUDED.raw_size, fetched_at = EXCLUDED.fetched_at, expires_at = EXCLUDED.expires_at,
                write_date = EXCLUDED.write_date
            """,
            {"index": index_id, "headers": json.dumps(body.headers), "html": body.html,
             "html_remote": body.html_remote, "blocked": body.remote_blocked, "text": body.text,
             "text_html": body.text_html, "attachments": json.dumps(body.attachments), "raw": raw,
             "raw_size": len(raw), "fetched": fetched_at, "expires": expires_at},
        )

    # -- where the message is -----------------------------------------------------------

    def locate(self, index_id: int) -> MessageLocation | None:
        self.cr.execute(
            "SELECT account_id, folder_id, remote_id, size, deleted_on_server, message_id "
            "FROM maildesk_message_index WHERE id = %s", [index_id])
        row = self.cr.fetchone()
        if row is None:
            return None
        account_id, folder_id, remote_id, size, deleted, message_id = row
        folder = FolderRepository(self.cr).get(folder_id)
        if folder is None:
            return None
        return MessageLocation(index_id=index_id, account_id=account_id, folder=folder, remote_id=remote_id,
                               size=size, deleted_on_server=bool(deleted), message_id=message_id)

    # -- upkeep ----------------------------------------------------------------------

    def purge_expired(self, now: dt.datetime) -> int:
        self.cr.execute(f"DELETE FROM {TABLE} WHERE expires_at < %s", [now])
        return self.cr.rowcount

    def evict_over(self, max_total_bytes: int) -> int:
        """Delete the oldest bodies (by ``fetched_at``) until the raw messages kept total at most
        ``max_total_bytes``; the number of rows deleted. One statement: a running sum, newest first."""
        self.cr.execute(
            f"""
            DELETE FROM {TABLE} c
             USING (SELECT id, sum(COALESCE(raw_size, 0)) OVER (
                               ORDER BY fetched_at DESC NULLS LAST, id DESC) AS kept
                      FROM {TABLE}) r
             WHERE c.id = r.id AND r.kept > %s
            """,
            [max(0, int(max_total_bytes))],
        )
        return self.cr.rowcount

    def size(self) -> tuple[int, int]:
        """(rows, bytes of raw messages) of the whole cache."""
        self.cr.execute("SELECT count(*), COALESCE(sum(raw_size), 0) FROM maildesk_ui_cache")
        rows, total = self.cr.fetchone()
        return rows, int(total)
