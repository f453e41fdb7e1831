"""``maildesk_ingest_queue``: the index rows on their way into ``mail.thread`` (use_cases/ingest.py).

Every transaction here runs at READ COMMITTED (``begin``): a scan that
waited for the writers of the last ids must then see their rows, and an
import that waited for another worker's lock on a Message-ID must see the
``mail.message`` that worker committed. At Odoo's REPEATABLE READ both would
read a snapshot taken before the wait.

The scan mark is ``mailbox_account.ingest_scan_mark``: every index row of
the account up to that id has been scanned. Marks move only forward
(``GREATEST``), and never write ``write_date`` (the account's write date
says when a person last changed it).
"""

import datetime as dt

from ..application.use_cases.ingest import QueueItem, ScannedRow, synthetic_index_id
from .account_lease import _read_committed
from .ui_cache import UiCacheRepository

TABLE = "maildesk_ingest_queue"

#: imports tried before a row is failed for an administrator to requeue
MAX_ATTEMPTS = 8

#: first keys of our advisory locks ("MDIS", "MDIM"), so they never meet another module's
SCAN_LOCK = 0x4D444953
MESSAGE_LOCK = 0x4D44494D

#: every column this module writes; an Odoo test checks they are model fields
COLUMNS = ("account_id", "index_id", "message_id", "state", "attempts", "max_attempts", "next_attempt_at",
           "last_error", "mail_message_id", "create_date", "write_date")
ACCOUNT_COLUMNS = ("ingest_scan_mark",)

#: created by the model's init() and by the engine tests alike: the claim's walk over due rows
INDEXES = (
    ("maildesk_ingest_queue_due_idx", "(next_attempt_at NULLS FIRST, id)", "state = 'pending'"),
)


def create_indexes(cr):
    for name, columns, where in INDEXES:
        # Constants of this module only.  # pylint: disable-next=sql-injection
        cr.execute(f"CREATE INDEX IF NOT EXISTS {name} ON {TABLE} {columns} WHERE {where}")


class IngestQueueRepository:
    def __init__(self, cr):
        self.cr = cr

    def begin(self):
        _read_committed(self.cr)

    # -- scan ------------------------------------------------------------------------

    def try_lock_scan(self) -> bool:
        """One scanner at a time; another worker's scan makes this one return at once."""
        self.cr.execute("SELECT pg_try_advisory_xact_lock(%s, 0)", [SCAN_LOCK])
        return self.cr.fetchone()[0]

    def last_index_id(self) -> int:
        """Every index row that exists or will exist with a lower id has taken its id by now."""
        self.cr.execute("SELECT last_value FROM maildesk_message_index_id_seq")
        return int(self.cr.fetchone()[0])

    def xid_horizon(self) -> int:
        """Transactions below this id have started; once none of them runs, their rows are all in."""
        self.cr.execute("SELECT pg_snapshot_xmax(pg_current_snapshot())::text::int8")
        return self.cr.fetchone()[0]

    def settled(self, xid: int) -> bool:
        """No other transaction older than ``xid`` can still commit rows into the index.

        Only the writers of ``maildesk_message_index`` matter: an insert holds
        RowExclusiveLock on it until its transaction ends, and has an xid. Any
        other open transaction (Odoo's cron runner keeps the job's ``ir_cron``
        row locked in a cursor of its own for the whole job, a long report...)
        cannot add rows below the mark, so waiting for it would wait forever.
        ``backend_xid`` is 32 bits: it is older than the horizon when the
        horizon is less than 2^31 transactions ahead of it (wraparound order).
        """
        self.cr.execute(
            """
            SELECT NOT EXISTS (
                SELECT 1 FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
                 WHERE l.locktype = 'relation' AND l.relation = 'maildesk_message_index'::regclass
                   AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
                   AND l.mode = 'RowExclusiveLock' AND l.granted AND l.pid <> pg_backend_pid()
                   AND a.backend_xid IS NOT NULL
                   AND ((%(h)s - a.backend_xid::text::int8) %% 4294967296 + 4294967296) %% 4294967296
                       BETWEEN 1 AND 2147483647)
            """,
            {"h": int(xid) & 0xFFFFFFFF},
        )
        return self.cr.fetchone()[0]

    def scan_marks(self) -> dict[int, int]:
        self.cr.execute("SELECT id, COALESCE(ingest_scan_mark, 0) FROM mailbox_account WHERE active")
        return dict(self.cr.fetchall())

    def scan_rows(self, after: int, upto: int, limit: int) -> list[ScannedRow]:
        """Index rows with ``after < id <= upto``, by id: a walk of the primary key."""
        self.cr.execute(
            """
            SELECT i.id, i.account_id, i.message_id, i.to_addresses, i.cc_addresses, i.in_reply_to,
                   i.references_header, f.role, COALESCE(i.is_draft, false), COALESCE(i.deleted_on_server, false),
                   COALESCE(i.needs_refetch, false),
                   i.message_id IS NOT NULL AND EXISTS (
                       SELECT 1 FROM maildesk_message_index s JOIN maildesk_folder sf ON sf.id = s.folder_id
                        WHERE s.message_id = i.message_id AND s.account_id = i.account_id AND sf.role = 'sent')
              FROM maildesk_message_index i
              JOIN maildesk_folder f ON f.id = i.folder_id
             WHERE i.id > %s AND i.id <= %s
             ORDER BY i.id
             LIMIT %s
            """,
            [after, upto, limit],
        )
        return [ScannedRow(*row) for row in self.cr.fetchall()]

    def known_message_ids(self, ids: list[str]) -> set[str]:
        """The ones ``mail.message`` holds: what Odoo sent or received (its routing's test for a reply)."""
        if not ids:
            return set()
        self.cr.execute("SELECT DISTINCT message_id FROM mail_message WHERE message_id = ANY(%s::varchar[])", [ids])
        return {row[0] for row in self.cr.fetchall()}

    def sent_message_ids(self, ids: list[str]) -> set[str]:
        """Those Odoo sent: a mail or a chatter message with an author, not a note's tracking or a
        system notification (a reply to one of those is what Odoo's routing threads)."""
        if not ids:
            return set()
        self.cr.execute(
            "SELECT DISTINCT message_id FROM mail_message WHERE message_id = ANY(%s::varchar[]) "
            "AND message_type IN ('email', 'comment', 'email_outgoing') AND author_id IS NOT NULL", [ids])
        return {row[0] for row in self.cr.fetchall()}

    def enqueue(self, rows, now: dt.datetime) -> int:
        """Queue (account, index id, Message-ID) rows; those already queued are left alone."""
        if not rows:
            return 0
        accounts, index_ids, message_ids = zip(*rows, strict=True)
        self.cr.execute(
            f"""
            INSERT INTO {TABLE} (account_id, index_id, message_id, state, attempts, max_attempts, next_attempt_at,
                                 create_date, write_date)
            SELECT a, i, m, 'pending', 0, %(max)s, %(now)s, %(now)s, %(now)s
              FROM unnest(%(accounts)s::int4[], %(index_ids)s::int4[], %(message_ids)s::varchar[]) AS r(a, i, m)
            ON CONFLICT (account_id, message_id) DO NOTHING
            """,
            {"accounts": list(accounts), "index_ids": list(index_ids), "message_ids": list(message_ids), "now": now,
             "max": MAX_ATTEMPTS},
        )
        return self.cr.rowcount

    def save_marks(self, marks: dict[int, int]) -> None:
        if not marks:
            return
        self.cr.execute(
            """
            UPDATE mailbox_account a SET ingest_scan_mark = GREATEST(COALESCE(a.ingest_scan_mark, 0), m.mark)
              FROM unnest(%s::int4[], %s::int4[]) AS m(id, mark)
             WHERE a.id = m.id AND COALESCE(a.ingest_scan_mark, 0) < m.mark
            """,
            [list(marks), list(marks.values())],
        )

    # -- import ----------------------------------------------------------------------

    def claim(self, now: dt.datetime, lease_until: dt.datetime, limit: int) -> list[QueueItem]:
        """Due rows, each counted as an attempt and hidden from other workers until ``lease_until``.

        A row whose worker died holding it comes back when the lease ends; one that used
        its last attempt that way is failed here.
        """
        self.cr.execute(
            f"""
            UPDATE {TABLE} SET state = 'failed', write_date = %(now)s,
                   last_error = COALESCE(last_error || E'\\n', '')
                                || 'The import did not finish (its worker stopped) at the last attempt.'
             WHERE state = 'pending' AND (next_attempt_at IS NULL OR next_attempt_at <= %(now)s)
               AND attempts >= max_attempts
            """,
            {"now": now},
        )
        self.cr.execute(
            f"""
            UPDATE {TABLE} q SET attempts = q.attempts + 1, next_attempt_at = %(lease)s, write_date = %(now)s
             WHERE q.id IN (SELECT id FROM {TABLE}
                             WHERE state = 'pending' AND (next_attempt_at IS NULL OR next_attempt_at <= %(now)s)
                               AND attempts < max_attempts
                             ORDER BY next_attempt_at NULLS FIRST, id
                             LIMIT %(limit)s
                               FOR UPDATE SKIP LOCKED)
            RETURNING q.id, q.account_id, q.index_id, q.message_id, q.attempts, q.max_attempts
            """,
            {"now": now, "lease": lease_until, "limit": limit},
        )
        return sorted((QueueItem(*row) for row in self.cr.fetchall()), key=lambda item: item.id)

    def lock_message(self, message_id: str) -> None:
        """Held until this transaction ends: one import of a Message-ID at a time, whatever the account."""
        self.cr.execute("SELECT pg_advisory_xact_lock(%s, hashtext(%s))", [MESSAGE_LOCK, message_id])

    def existing_message(self, message_id: str) -> int | None:
        self.cr.execute("SELECT id FROM mail_message WHERE message_id = %s ORDER BY id LIMIT 1", [message_id])
        row = self.cr.fetchone()
        return row[0] if row else None

    def locate(self, item: QueueItem):
        """Where the message is now: its queued row, or another live row of the account with its
        Message-ID (an IMAP move gives the message a new row)."""
        if synthetic_index_id(item.message_id) is not None:
            # Queued without a Message-ID: only its own row names it.
            return UiCacheRepository(self.cr).locate(item.index_id) if item.index_id else None
        self.cr.execute(
            """
            SELECT id FROM maildesk_message_index
             WHERE account_id = %s AND message_id = %s
             ORDER BY COALESCE(deleted_on_server, false), (id = %s) DESC, id DESC
             LIMIT 1
            """,
            [item.account_id, item.message_id, item.index_id or 0],
        )
        row = self.cr.fetchone()
        return UiCacheRepository(self.cr).locate(row[0]) if row else None

    def cached_raw(self, index_id: int, now: dt.datetime) -> bytes | None:
        self.cr.execute("SELECT raw_message FROM maildesk_ui_cache WHERE index_id = %s AND expires_at > %s "
                        "AND raw_message IS NOT NULL", [index_id, now])
        row = self.cr.fetchone()
        return bytes(row[0]) if row else None

    def done(self, item_id: int, mail_message_id: int | None, now: dt.datetime) -> None:
        self.cr.execute(
            f"UPDATE {TABLE} SET state = 'done', mail_message_id = %s, last_error = NULL, next_attempt_at = NULL, "
            "write_date = %s WHERE id = %s",
            [mail_message_id, now, item_id])

    def retry(self, item_id: int, error: str, at: dt.datetime, now: dt.datetime) -> None:
        self.cr.execute(
            f"UPDATE {TABLE} SET state = 'pending', last_error = %s, next_attempt_at = %s, write_date = %s "
            "WHERE id = %s",
            [error, at, now, item_id])

    def fail(self, item_id: int, error: str, now: dt.datetime) -> None:
        self.cr.execute(
            f"UPDATE {TABLE} SET state = 'failed', last_error = %s, next_attempt_at = NULL, write_date = %s "
            "WHERE id = %s",
            [error, now, item_id])

    def requeue(self, item_ids, now: dt.datetime) -> int:
        """Failed rows back in the queue, due now, with all their attempts again."""
        self.cr.execute(
            f"UPDATE {TABLE} SET state = 'pending', attempts = 0, next_attempt_at = %s, write_date = %s "
            "WHERE id = ANY(%s) AND state = 'failed'",
            [now, now, list(item_ids)])
        return self.cr.rowcount

    # -- figures ---------------------------------------------------------------------

    def counts(self) -> dict[str, int]:
        self.cr.execute(f"SELECT state, count(*) FROM {TABLE} GROUP BY state")  # pylint: disable=sql-injection
        return dict(self.cr.fetchall())
