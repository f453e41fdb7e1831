"""``maildesk_message_index``: the single source of truth for message metadata.

Rows are identified by ``delivery_key`` (account, provider, folder,
remote id), unique in SQL, so a chunk replayed after a crash updates
instead of doubling. Writes are batched through ``unnest`` arrays: one
statement per chunk, whatever its size.

Text that goes into a btree index is cut to a bound the index accepts
(a btree entry must fit in a third of a page, about 2,700 bytes), so no
header, however long, can make PostgreSQL refuse a row.
"""

import psycopg2
from psycopg2 import errorcodes, errors

from ..application.domain import UpsertResult
from ..application.threading import thread_key
from .folder_seen import FolderSeenRepository
from .fulltext import GIN_INDEXES

TABLE = "maildesk_message_index"

#: Errors one row's values can cause; the engine then stores that row without its details.
ROW_ERRORS = (psycopg2.DataError, psycopg2.IntegrityError, errors.lookup(errorcodes.PROGRAM_LIMIT_EXCEEDED))

# Characters, not bytes: 500 characters of UTF-8 stay under the btree limit.
_INDEXED_TEXT = 500
_DISPLAY_TEXT = 2000


def _cut(value, limit):
    return value[:limit] if value and len(value) > limit else value


# Column, SQL array type, how to read it off a MessageMeta.
_META_COLUMNS = (
    ("remote_id", "varchar", lambda m: m.remote_id),
    ("uid", "int8", lambda m: m.uid),
    ("message_id", "varchar", lambda m: _cut(m.message_id, _INDEXED_TEXT)),
    ("in_reply_to", "varchar", lambda m: _cut(m.in_reply_to, _INDEXED_TEXT)),
    ("references_header", "text", lambda m: m.references),
    ("subject", "varchar", lambda m: _cut(m.subject, _DISPLAY_TEXT)),
    ("from_address", "varchar", lambda m: _cut(m.from_address, _DISPLAY_TEXT)),
    ("to_addresses", "text", lambda m: m.to_addresses),
    ("cc_addresses", "text", lambda m: m.cc_addresses),
    ("date", "timestamp", lambda m: m.date or m.internal_date),
    ("internal_date", "timestamp", lambda m: m.internal_date),
    ("size", "int4", lambda m: min(m.size or 0, 2**31 - 1)),
    ("is_seen", "bool", lambda m: m.flags.seen),
    ("is_flagged", "bool", lambda m: m.flags.flagged),
    ("is_answered", "bool", lambda m: m.flags.answered),
    ("is_draft", "bool", lambda m: m.flags.draft),
    ("has_attachments", "bool", lambda m: m.has_attachments),
    ("snippet", "varchar", lambda m: m.snippet),
    ("modseq", "int8", lambda m: m.modseq),
    ("parse_error", "text", lambda m: m.parse_error),
    ("needs_refetch", "bool", lambda m: bool(m.parse_error and m.refetch)),
)

# Columns that only change with the flags; the rest is immutable per message,
# except on a row indexed incomplete, which takes the whole answer once it comes.
_FLAG_COLUMNS = ("is_seen", "is_flagged", "is_answered", "is_draft")
_DETAIL_COLUMNS = tuple(
    name for name, _type, _get in _META_COLUMNS if name not in (*_FLAG_COLUMNS, "modseq", "remote_id", "uid")
)

#: every column this module writes; an Odoo test checks they are model fields
COLUMNS = (
    "account_id", "folder_id", "provider", "delivery_key", "thread_key",
    "deleted_on_server", "deleted_at", "fetch_attempts",
    *(name for name, _type, _get in _META_COLUMNS),
)

#: Rows whose remote id names the message in its whole account (every provider but IMAP).
#: Repeated word for word in the queries, so PostgreSQL matches them to the partial index.
_ACCOUNT_WIDE_IDS = "provider <> 'imap'"

#: The indexes the engine's and the inbox's queries need, created by the
#: model's init() and by the engine tests' schema alike (name, columns, where[, method]).
INDEXES = (
    # The inbox list: one folder, newest first, live rows only.
    ("maildesk_message_index_inbox_list_idx", "account_id, folder_id, date DESC, id DESC", "NOT deleted_on_server"),
    # Lists across folders (unified inbox, search) and an account's delete.
    ("maildesk_message_index_account_date_idx", "account_id, date DESC, id DESC", None),
    # Flag updates, expunges and reconciliation windows by UID.
    ("maildesk_message_index_folder_uid_idx", "folder_id, uid", None),
    # Rows worth asking the server for again.
    ("maildesk_message_index_refetch_idx", "folder_id", "needs_refetch"),
    # A message wherever it is in its account: Gmail's per-message flags and label moves, Graph's moves.
    # IMAP has no account-wide message id, and its rows are most of the table: they stay out.
    ("maildesk_message_index_account_remote_idx", "account_id, remote_id", _ACCOUNT_WIDE_IDS),
    # Search: GIN indexes on the full-text documents (repositories/fulltext.py). No index may name
    # a flag column (is_seen, ...), not even in a predicate: flag changes would no longer be HOT.
    *GIN_INDEXES,
)


#: Indexes an earlier version created, dropped by create_indexes (an index on is_seen made flag changes non-HOT).
OBSOLETE_INDEXES = ("maildesk_message_index_folder_counts_idx",)


def delivery_key(account_id, provider, folder_id, remote_id):
    return f"{account_id}:{provider}:{folder_id}:{remote_id}"


def create_indexes(cr):
    # Flag changes are most of the writes and touch no indexed column: room on each
    # page lets PostgreSQL update those rows in place (HOT), without writing every index.
    cr.execute(f"ALTER TABLE {TABLE} SET (fillfactor = 80)")  # pylint: disable=sql-injection
    for name in OBSOLETE_INDEXES:
        # Constants of this module only.  # pylint: disable-next=sql-injection
        cr.execute(f"DROP INDEX IF EXISTS {name}")
    for name, columns, where, *method in INDEXES:
        using = f" USING {method[0]}" if method else ""
        # Constants of this module only.  # pylint: disable-next=sql-injection
        cr.execute(f"CREATE INDEX IF NOT EXISTS {name} ON {TABLE}{using} ({columns})"
                   + (f" WHERE {where}" if where else ""))


_NOW = "(now() AT TIME ZONE 'UTC')"


class MessageIndexRepository:
    def __init__(self, cr):
        self.cr = cr
        self._prefixes = {}  # folder id -> its delivery keys' prefix (a folder never changes account)

    def upsert(self, account_id, folder_id, provider, messages, moves=False):
        """Insert new rows, refresh changed ones, revive rows marked deleted, heal incomplete ones.

        Returns an :class:`UpsertResult` for each row inserted or changed;
        rows that are already identical are left alone (no write, no hook).
        With ``moves``, a message the account holds in another folder is
        first moved here: the same row, so what refers to it stays valid.
        """
        if not messages:
            return []
        # One statement may not touch a row twice (PostgreSQL's CardinalityViolation, which no
        # savepoint bisection could isolate): an id named twice (pages that overlap) keeps its last word.
        messages = list({m.remote_id: m for m in messages}.values())
        moved = self._move_here(account_id, folder_id, [m.remote_id for m in messages]) if moves else []
        names = [name for name, _type, _get in _META_COLUMNS]
        arrays = [[get(m) for m in messages] for _name, _type, get in _META_COLUMNS]
        keys = [delivery_key(account_id, provider, folder_id, m.remote_id) for m in messages]
        threads = [
            _cut(thread_key(m.message_id, m.in_reply_to, m.references, fallback=key), _INDEXED_TEXT)
            for m, key in zip(messages, keys, strict=True)
        ]
        unnest = ", ".join(f"%s::{sqltype}[]" for _name, sqltype, _get in _META_COLUMNS)
        # A row indexed without its details takes them from a complete answer.
        heal = "t.parse_error IS NOT NULL AND EXCLUDED.parse_error IS NULL"
        refreshed = [f"{c} = EXCLUDED.{c}" for c in (*_FLAG_COLUMNS, "modseq", "deleted_on_server", "deleted_at")]
        healed = [f"{c} = CASE WHEN {heal} THEN EXCLUDED.{c} ELSE t.{c} END" for c in (*_DETAIL_COLUMNS, "thread_key")]
        self.cr.execute(
            f"""
            INSERT INTO {TABLE} AS t (
                account_id, folder_id, provider, delivery_key, thread_key,
                deleted_on_server, fetch_attempts, {", ".join(names)},
                create_date, write_date
            )
            SELECT %s, %s, %s, u.delivery_key, u.thread_key, false, 0, {", ".join(f"u.{n}" for n in names)},
                   {_NOW}, {_NOW}
              FROM unnest(%s::varchar[], %s::varchar[], {unnest})
                   AS u(delivery_key, thread_key, {", ".join(names)})
            ON CONFLICT (delivery_key) DO UPDATE SET
                {", ".join(refreshed + healed)},
                write_date = EXCLUDED.write_date
            WHERE ({", ".join(f"t.{c}" for c in _FLAG_COLUMNS)}, t.deleted_on_server)
                  IS DISTINCT FROM
                  ({", ".join(f"EXCLUDED.{c}" for c in _FLAG_COLUMNS)}, EXCLUDED.deleted_on_server)
               OR ({heal})
            RETURNING t.remote_id, t.uid, t.id, (t.xmax = 0)
            """,
            [account_id, folder_id, provider, keys, threads, *arrays],
        )
        changed = [UpsertResult(*row) for row in self.cr.fetchall()]
        seen = {row.index_id for row in changed}
        return changed + [row for row in moved if row.index_id not in seen]

    def _move_here(self, account_id, folder_id, remote_ids):
        """Rows of these messages in the account's other folders, now filed under this one.

        One row per message moves (a live one first); a message this folder
        already holds is not moved (its row here is the one that counts).
        """
        prefix = self._key_prefix(folder_id)
        self.cr.execute(
            f"""
            WITH moving AS (
                SELECT DISTINCT ON (t.remote_id) t.id
                  FROM {TABLE} t
                 WHERE {_ACCOUNT_WIDE_IDS} AND t.account_id = %s AND t.remote_id = ANY(%s::varchar[])
                   AND t.folder_id <> %s
                   AND NOT EXISTS (SELECT 1 FROM {TABLE} h WHERE h.delivery_key = %s || t.remote_id)
                 ORDER BY t.remote_id, t.deleted_on_server, t.id DESC
            )
            UPDATE {TABLE} t
               SET folder_id = %s, delivery_key = %s || t.remote_id, write_date = {_NOW}
              FROM moving WHERE t.id = moving.id
            RETURNING t.remote_id, t.uid, t.id, false
            """,
            [account_id, list(remote_ids), folder_id, prefix, folder_id, prefix],
        )
        return [UpsertResult(*row) for row in self.cr.fetchall()]

    def folders_of(self, account_id, remote_ids):
        """{remote id: ids of the folders holding a live row of it}, for account-wide ids."""
        self.cr.execute(
            f"""
            SELECT remote_id, folder_id FROM {TABLE}
             WHERE {_ACCOUNT_WIDE_IDS} AND account_id = %s AND remote_id = ANY(%s::varchar[])
               AND NOT deleted_on_server
            """,
            [account_id, sorted(remote_ids)],
        )
        found = {}
        for remote_id, folder_id in self.cr.fetchall():
            found.setdefault(remote_id, set()).add(folder_id)
        return found

    def update_flags_everywhere(self, account_id, updates):
        """A message's flags in every folder it is in: [(folder id, row)] of the rows that changed."""
        if not updates:
            return []
        self.cr.execute(
            f"""
            UPDATE {TABLE} AS t
               SET is_seen = u.seen, is_flagged = u.flagged,
                   is_answered = u.answered, is_draft = u.draft,
                   write_date = {_NOW}
              FROM unnest(%s::varchar[], %s::bool[], %s::bool[], %s::bool[], %s::bool[])
                   AS u(remote_id, seen, flagged, answered, draft)
             WHERE {_ACCOUNT_WIDE_IDS} AND t.account_id = %s AND t.remote_id = u.remote_id
               AND NOT t.deleted_on_server
               AND (t.is_seen, t.is_flagged, t.is_answered, t.is_draft)
                   IS DISTINCT FROM (u.seen, u.flagged, u.answered, u.draft)
            RETURNING t.folder_id, t.remote_id, t.uid, t.id, false
            """,
            [
                [u.remote_id for u in updates],
                [u.flags.seen for u in updates],
                [u.flags.flagged for u in updates],
                [u.flags.answered for u in updates],
                [u.flags.draft for u in updates],
                account_id,
            ],
        )
        return [(row[0], UpsertResult(*row[1:])) for row in self.cr.fetchall()]

    # What a full round of a provider's change feed listed so far (Graph delta): repositories/folder_seen.py.

    def live_among(self, folder_id, remote_ids):
        return FolderSeenRepository(self.cr).live_among(folder_id, remote_ids)

    def remember_listed(self, folder_id, remote_ids):
        FolderSeenRepository(self.cr).remember(folder_id, remote_ids)

    def forget_listed(self, folder_id, remote_ids=None):
        FolderSeenRepository(self.cr).forget(folder_id, remote_ids)

    def unlisted(self, folder_id):
        return FolderSeenRepository(self.cr).unlisted(folder_id)

    def live_dates(self, folder_id, remote_ids):
        """{remote id: internal date} of the folder's live rows among ``remote_ids`` (a page's worth)."""
        if not remote_ids:
            return {}
        # Spelled so the partial (account_id, remote_id) index of non-IMAP rows serves it.
        self.cr.execute(f"""SELECT remote_id, internal_date FROM {TABLE}
                             WHERE {_ACCOUNT_WIDE_IDS}
                               AND account_id = (SELECT account_id FROM maildesk_folder WHERE id = %s)
                               AND remote_id = ANY(%s::varchar[]) AND folder_id = %s AND NOT deleted_on_server""",
                        [folder_id, sorted(remote_ids), folder_id])
        return dict(self.cr.fetchall())

    def update_flags(self, folder_id, updates):
        """Apply flag updates to live rows that differ; unknown messages are ignored.

        A message we have not indexed yet (below the walk cursor) gets its
        flags when the walk fetches it, so it is not created here. IMAP
        updates (they carry UIDs, thousands at once in a reconciliation
        window) find their rows by a range of the ``(folder_id, uid)`` index;
        others by their delivery keys.
        """
        if not updates:
            return []
        by_uid = all(u.uid is not None for u in updates)
        if by_uid:
            uids = [u.uid for u in updates]
            match = "t.folder_id = %s AND t.uid BETWEEN %s AND %s AND t.uid = u.uid"
            params = [folder_id, min(uids), max(uids)]
        else:
            match = "t.delivery_key = %s || u.remote_id"
            params = [self._key_prefix(folder_id)]
        self.cr.execute(
            f"""
            UPDATE {TABLE} AS t
               SET is_seen = u.seen, is_flagged = u.flagged,
                   is_answered = u.answered, is_draft = u.draft,
                   modseq = COALESCE(u.modseq, t.modseq),
                   write_date = {_NOW}
              FROM unnest(%s::varchar[], %s::int8[], %s::bool[], %s::bool[], %s::bool[], %s::bool[], %s::int8[])
                   AS u(remote_id, uid, seen, flagged, answered, draft, modseq)
             WHERE {match} AND NOT t.deleted_on_server
               AND (t.is_seen, t.is_flagged, t.is_answered, t.is_draft)
                   IS DISTINCT FROM (u.seen, u.flagged, u.answered, u.draft)
            RETURNING t.remote_id, t.uid, t.id, false
            """,
            [
                [u.remote_id for u in updates],
                [u.uid for u in updates],
                [u.flags.seen for u in updates],
                [u.flags.flagged for u in updates],
                [u.flags.answered for u in updates],
                [u.flags.draft for u in updates],
                [u.modseq for u in updates],
                *params,
            ],
        )
        return [UpsertResult(*row) for row in self.cr.fetchall()]

    def live_uids(self, folder_id, low=1, high=None):
        self.cr.execute(
            f"""
            SELECT uid FROM {TABLE}
             WHERE folder_id = %s AND uid >= %s AND (%s::int8 IS NULL OR uid <= %s::int8)
               AND NOT deleted_on_server
            """,
            [folder_id, low, high, high],
        )
        return {uid for (uid,) in self.cr.fetchall()}

    def count_live(self, folder_id, low=1, high=None):
        """Live rows of a UID range, counted in the ``(folder_id, uid)`` index."""
        self.cr.execute(
            f"""
            SELECT count(*) FROM {TABLE}
             WHERE folder_id = %s AND uid >= %s AND (%s::int8 IS NULL OR uid <= %s::int8)
               AND NOT deleted_on_server
            """,
            [folder_id, low, high, high],
        )
        return self.cr.fetchone()[0]

    def mark_deleted(self, folder_id, remote_ids):
        remote_ids = sorted(remote_ids)
        if not remote_ids:
            return 0
        prefix = self._key_prefix(folder_id)
        self.cr.execute(
            f"""
            UPDATE {TABLE}
               SET deleted_on_server = true, deleted_at = {_NOW}, write_date = {_NOW}
             WHERE delivery_key = ANY(%s::varchar[]) AND NOT deleted_on_server
            """,
            [[prefix + remote_id for remote_id in remote_ids]],
        )
        return self.cr.rowcount

    def purge_folder(self, folder_id):
        """Drop every row of a folder: its ids are meaningless after a UIDVALIDITY change."""
        self.cr.execute(f"DELETE FROM {TABLE} WHERE folder_id = %s", [folder_id])
        return self.cr.rowcount

    def newest(self, folder_id):
        self.cr.execute(
            f"""
            SELECT remote_id, message_id FROM {TABLE}
             WHERE folder_id = %s AND uid IS NOT NULL AND NOT deleted_on_server AND parse_error IS NULL
             ORDER BY uid DESC LIMIT 1
            """,
            [folder_id],
        )
        row = self.cr.fetchone()
        return tuple(row) if row else None

    def incomplete(self, folder_id, limit):
        self.cr.execute(
            f"""
            SELECT remote_id FROM {TABLE}
             WHERE folder_id = %s AND needs_refetch AND NOT deleted_on_server
             ORDER BY id LIMIT %s
            """,
            [folder_id, limit],
        )
        return [remote_id for (remote_id,) in self.cr.fetchall()]

    def refetch_failed(self, folder_id, remote_ids, max_attempts):
        prefix = self._key_prefix(folder_id)
        self.cr.execute(
            f"""
            UPDATE {TABLE}
               SET fetch_attempts = COALESCE(fetch_attempts, 0) + 1,
                   needs_refetch = COALESCE(fetch_attempts, 0) + 1 < %s
             WHERE delivery_key = ANY(%s::varchar[])
            """,
            [max_attempts, [prefix + remote_id for remote_id in remote_ids]],
        )

    def _key_prefix(self, folder_id):
        """Every key of a folder starts with this: look-ups by id go through the unique index."""
        prefix = self._prefixes.get(folder_id)
        if prefix is None:
            self.cr.execute(
                """
                SELECT a.id, a.provider FROM maildesk_folder f JOIN mailbox_account a ON a.id = f.account_id
                 WHERE f.id = %s
                """,
                [folder_id],
            )
            row = self.cr.fetchone()
            prefix = delivery_key(row[0], row[1], folder_id, "") if row else ""
            self._prefixes[folder_id] = prefix
        return prefix
