"""``maildesk_message_index``: the single source of truth for message metadata.

Rows are identified by ``delivery_key`` (account, provider, folder, uid),
unique in SQL, so a chunk replayed after a crash updates instead of
doubling. Writes are batched through ``unnest`` arrays: one statement per
chunk, whatever its size.
"""

from ..application.domain import UpsertResult
from ..application.threading import thread_key

TABLE = "maildesk_message_index"

# Column, SQL array type, how to read it off a MessageMeta.
_META_COLUMNS = (
    ("uid", "int8", lambda m: m.uid),
    ("message_id", "varchar", lambda m: m.message_id),
    ("in_reply_to", "varchar", lambda m: m.in_reply_to),
    ("references_header", "text", lambda m: m.references),
    ("subject", "varchar", lambda m: m.subject),
    ("from_address", "varchar", lambda m: m.from_address),
    ("to_addresses", "text", lambda m: m.to_addresses),
    ("cc_addresses", "text", lambda m: m.cc_addresses),
    ("date", "timestamp", lambda m: m.date or m.internal_date),
    ("internal_date", "timestamp", lambda m: m.internal_date),
    ("size", "int4", lambda m: m.size or 0),
    ("is_seen", "bool", lambda m: m.flags.seen),
    ("is_flagged", "bool", lambda m: m.flags.flagged),
    ("is_answered", "bool", lambda m: m.flags.answered),
    ("is_draft", "bool", lambda m: m.flags.draft),
    ("has_attachments", "bool", lambda m: m.has_attachments),
    ("snippet", "varchar", lambda m: m.snippet),
    ("modseq", "int8", lambda m: m.modseq),
    ("parse_error", "text", lambda m: m.parse_error),
)

# Columns that only change with the flags; the rest is immutable per UID.
_FLAG_COLUMNS = ("is_seen", "is_flagged", "is_answered", "is_draft")

#: every column this module writes; an Odoo test checks they are model fields
COLUMNS = (
    "account_id", "folder_id", "provider", "delivery_key", "thread_key",
    "deleted_on_server", "deleted_at",
    *(name for name, _type, _get in _META_COLUMNS),
)


def delivery_key(account_id, provider, folder_id, uid):
    return f"{account_id}:{provider}:{folder_id}:{uid}"


def _sql_now():
    return "(now() AT TIME ZONE 'UTC')"


class MessageIndexRepository:
    def __init__(self, cr):
        self.cr = cr

    def upsert(self, account_id, folder_id, provider, messages):
        """Insert new rows, refresh changed ones, revive rows marked deleted.

        Returns an :class:`UpsertResult` for each row inserted or changed;
        rows that are already identical are left alone (no write, no hook).
        """
        if not messages:
            return []
        names = [name for name, _type, _get in _META_COLUMNS]
        arrays = [[get(m) for m in messages] for _name, _type, get in _META_COLUMNS]
        keys = [delivery_key(account_id, provider, folder_id, m.uid) for m in messages]
        threads = [
            thread_key(m.message_id, m.in_reply_to, m.references, fallback=key)
            for m, key in zip(messages, keys, strict=False)
        ]
        unnest = ", ".join(f"%s::{sqltype}[]" for _name, sqltype, _get in _META_COLUMNS)
        refreshed = (*_FLAG_COLUMNS, "modseq", "deleted_on_server", "deleted_at")
        self.cr.execute(
            f"""
            INSERT INTO {TABLE} AS t (
                account_id, folder_id, provider, delivery_key, thread_key,
                deleted_on_server, {", ".join(names)},
                create_date, write_date
            )
            SELECT %s, %s, %s, u.delivery_key, u.thread_key, false, {", ".join(f"u.{n}" for n in names)},
                   {_sql_now()}, {_sql_now()}
              FROM unnest(%s::varchar[], %s::varchar[], {unnest})
                   AS u(delivery_key, thread_key, {", ".join(names)})
            ON CONFLICT (delivery_key) DO UPDATE SET
                {", ".join(f"{c} = EXCLUDED.{c}" for c in refreshed)},
                write_date = EXCLUDED.write_date
            WHERE ({", ".join(f"t.{c}" for c in _FLAG_COLUMNS)}, t.deleted_on_server)
                  IS DISTINCT FROM
                  ({", ".join(f"EXCLUDED.{c}" for c in _FLAG_COLUMNS)}, EXCLUDED.deleted_on_server)
            RETURNING t.uid, t.id, (t.xmax = 0)
            """,
            [account_id, folder_id, provider, keys, threads, *arrays],
        )
        return [UpsertResult(uid, index_id, inserted) for uid, index_id, inserted in self.cr.fetchall()]

    def update_flags(self, folder_id, updates):
        """Apply flag updates to live rows that differ; unknown UIDs are ignored.

        A UID we have not indexed yet (below the backfill cursor) gets its
        flags when backfill fetches it, so it is not created here.
        """
        if not updates:
            return []
        self.cr.execute(
            f"""
            UPDATE {TABLE} AS t
               SET is_seen = u.seen, is_flagged = u.flagged,
                   is_answered = u.answered, is_draft = u.draft,
                   modseq = COALESCE(u.modseq, t.modseq),
                   write_date = {_sql_now()}
              FROM unnest(%s::int8[], %s::bool[], %s::bool[], %s::bool[], %s::bool[], %s::int8[])
                   AS u(uid, seen, flagged, answered, draft, modseq)
             WHERE t.folder_id = %s AND t.uid = u.uid AND NOT t.deleted_on_server
               AND (t.is_seen, t.is_flagged, t.is_answered, t.is_draft)
                   IS DISTINCT FROM (u.seen, u.flagged, u.answered, u.draft)
            RETURNING t.uid, t.id
            """,
            [
                [u.uid for u in updates],
                [u.flags.seen for u in updates],
                [u.flags.flagged for u in updates],
                [u.flags.answered for u in updates],
                [u.flags.draft for u in updates],
                [u.modseq for u in updates],
                folder_id,
            ],
        )
        return [UpsertResult(uid, index_id, False) for uid, index_id in self.cr.fetchall()]

    def live_uids(self, folder_id, low=1, high=None):
        self.cr.execute(
            f"""
            SELECT uid FROM {TABLE}
             WHERE folder_id = %s AND NOT deleted_on_server
               AND uid >= %s AND (%s::int8 IS NULL OR uid <= %s::int8)
            """,
            [folder_id, low, high, high],
        )
        return {uid for (uid,) in self.cr.fetchall()}

    def mark_deleted(self, folder_id, uids):
        uids = sorted(uids)
        if not uids:
            return 0
        self.cr.execute(
            f"""
            UPDATE {TABLE}
               SET deleted_on_server = true, deleted_at = {_sql_now()}, write_date = {_sql_now()}
             WHERE folder_id = %s AND uid = ANY(%s::int8[]) AND NOT deleted_on_server
            """,
            [folder_id, uids],
        )
        return self.cr.rowcount

    def purge_folder(self, folder_id):
        """Drop every row of a folder: its UIDs are meaningless after a UIDVALIDITY change."""
        self.cr.execute(f"DELETE FROM {TABLE} WHERE folder_id = %s", [folder_id])
        return self.cr.rowcount
