"""``maildesk_folder``: folders and their sync cursors."""

from ..application.domain import BackfillState, FolderRole, FolderState, FolderSyncState

TABLE = "maildesk_folder"

_STATE_COLUMNS = (
    "id", "account_id", "path", "role", "selectable", "remote_id", "uidvalidity", "uidnext",
    "highest_modseq", "last_uid", "low_uid", "server_exists", "last_sync_at", "sync_state",
    "backfill_state", "bootstrap_indexed", "sync_cursor", "backfill_cursor", "reconcile_cursor",
    "reconciled_at", "missing_runs",
)
_CURSOR_COLUMNS = (
    "uidvalidity", "uidnext", "highest_modseq", "last_uid", "low_uid", "server_exists", "sync_state",
    "backfill_state", "bootstrap_indexed", "sync_cursor", "backfill_cursor", "reconcile_cursor",
    "reconciled_at",
)
# Odoo's Integer reads NULL as 0; the engine wants None for "not known yet".
_ZERO_IF_NULL = ("last_uid", "low_uid", "bootstrap_indexed", "missing_runs")

#: every column this module writes; an Odoo test checks they are model fields
COLUMNS = (*_STATE_COLUMNS, "name", "delimiter", "role_sequence", "last_error", "warning", "warning_at")

# Progress ends an error of the last visit, but not "missing from the listing": that
# one lasts until the folder is listed again (record_missing(…, 0)).
_KEEP_MISSING = "CASE WHEN missing_runs > 0 THEN last_error END"

_SELECT = f"SELECT {', '.join(_STATE_COLUMNS)} FROM {TABLE}"
_NOW = "(now() AT TIME ZONE 'UTC')"


def _state(row):
    values = dict(zip(_STATE_COLUMNS, row, strict=True))
    for name in _ZERO_IF_NULL:
        values[name] = values[name] or 0
    values["remote_id"] = values["remote_id"] or values["path"]
    return FolderState(**values)


class FolderRepository:
    def __init__(self, cr):
        self.cr = cr

    def list_for_account(self, account_id):
        # INBOX first: it is what the user looks at, so it syncs first.
        self.cr.execute(
            f"{_SELECT} WHERE account_id = %s ORDER BY role = 'inbox' DESC, path, id",
            [account_id],
        )
        return [_state(row) for row in self.cr.fetchall()]

    def get(self, folder_id):
        self.cr.execute(f"{_SELECT} WHERE id = %s", [folder_id])
        row = self.cr.fetchone()
        return _state(row) if row else None

    def insert(self, account_id, folder):
        self.cr.execute(
            f"""
            INSERT INTO {TABLE} (account_id, path, remote_id, name, delimiter, role, role_sequence, selectable,
                                 sync_state, backfill_state, last_uid, low_uid, bootstrap_indexed,
                                 missing_runs, create_date, write_date)
            VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, 0, 0, 0, 0, {_NOW}, {_NOW})
            ON CONFLICT (account_id, path) DO NOTHING
            RETURNING id
            """,
            [account_id, folder.path, folder.remote_id, folder.name, folder.delimiter, folder.role,
             FolderRole.sequence(folder.role), folder.selectable, FolderSyncState.NEW, BackfillState.PENDING],
        )
        row = self.cr.fetchone()
        if row is None:  # a concurrent discovery created it first
            self.cr.execute(f"SELECT id FROM {TABLE} WHERE account_id = %s AND path = %s",
                            [account_id, folder.path])
            row = self.cr.fetchone()
        return self.get(row[0])

    def update_remote(self, folder_id, folder):
        self.cr.execute(
            f"""
            UPDATE {TABLE}
               SET path = %s, remote_id = %s, name = %s, delimiter = %s, role = %s, role_sequence = %s,
                   selectable = %s, write_date = {_NOW}
             WHERE id = %s
            """,
            [folder.path, folder.remote_id, folder.name, folder.delimiter, folder.role,
             FolderRole.sequence(folder.role), folder.selectable, folder_id],
        )

    def park(self, folder_id):
        """Move a folder out of the way of the path another folder takes in the same discovery.

        The temporary path cannot be a real one: it ends in a control character and the id.
        """
        self.cr.execute(f"UPDATE {TABLE} SET path = path || chr(31) || id::text WHERE id = %s", [folder_id])

    def delete(self, folder_id):
        # Index rows, cache and queue rows go with it (ON DELETE CASCADE).
        self.cr.execute(f"DELETE FROM {TABLE} WHERE id = %s", [folder_id])

    def save_cursors(self, state, synced=False):
        """Progress was made, so an earlier error of this folder is over.

        ``last_sync_at`` orders incremental sync (least recently synced
        first), so only a finished incremental pass moves it: a backfill
        checkpoint must not send a folder to the back of that queue.
        """
        assignments = ", ".join(f"{name} = %s" for name in _CURSOR_COLUMNS)
        self.cr.execute(
            f"""
            UPDATE {TABLE}
               SET {assignments}, last_error = {_KEEP_MISSING}, write_date = {_NOW}
                   {f", last_sync_at = {_NOW}" if synced else ""}
             WHERE id = %s
            """,
            [*(getattr(state, name) for name in _CURSOR_COLUMNS), state.id],
        )

    def touch(self, folder_id):
        """Visited, nothing to do: it goes to the back of the queue."""
        self.cr.execute(f"UPDATE {TABLE} SET last_sync_at = {_NOW}, last_error = {_KEEP_MISSING} WHERE id = %s",
                        [folder_id])

    def record_error(self, folder_id, message):
        # Stamped as visited too, so a folder that keeps failing does not
        # hold the account's other folders back.
        self.cr.execute(f"UPDATE {TABLE} SET last_error = %s, last_sync_at = {_NOW} WHERE id = %s",
                        [message, folder_id])

    def record_warning(self, folder_id, message):
        """Something the admin should see that progress does not make go away (an add-on
        that failed on a message, a message the database would not store): kept until
        the next warning replaces it."""
        self.cr.execute(f"UPDATE {TABLE} SET warning = %s, warning_at = {_NOW} WHERE id = %s",
                        [message, folder_id])

    def record_missing(self, folder_id, runs):
        self.cr.execute(
            f"""
            UPDATE {TABLE}
               SET missing_runs = %s,
                   last_error = CASE WHEN %s > 0 THEN %s END
             WHERE id = %s
            """,
            [runs, runs, f"Missing from the server's folder list {runs} time(s) in a row; its messages "
                         "are dropped if it stays away.", folder_id],
        )

    def claim_backfill(self, limit, exclude_accounts=(), providers=("imap",)):
        """Lock up to ``limit`` folders that still have history to fetch.

        SKIP LOCKED lets several cron workers, even on several hosts, split
        the folders between them instead of queueing behind each other. The
        least recently visited come first, so every folder makes progress.
        """
        self.cr.execute(
            f"""
            {_SELECT}
             WHERE sync_state = %s AND backfill_state = %s AND selectable
               AND account_id IN ({_ACCOUNTS_DUE})
               AND account_id <> ALL(%s::int4[])
             ORDER BY last_sync_at ASC NULLS FIRST, id
             LIMIT %s
             FOR UPDATE SKIP LOCKED
            """,
            [FolderSyncState.INCREMENTAL, BackfillState.PENDING, list(providers), list(exclude_accounts), limit],
        )
        return [_state(row) for row in self.cr.fetchall()]

    def count_backfill_pending(self, providers=("imap",)):
        self.cr.execute(
            f"""
            SELECT count(*) FROM {TABLE}
             WHERE sync_state = %s AND backfill_state = %s AND selectable
               AND account_id IN ({_ACCOUNTS_DUE})
            """,
            [FolderSyncState.INCREMENTAL, BackfillState.PENDING, list(providers)],
        )
        return self.cr.fetchone()[0]


# Accounts the backfill cron may work on: of a provider the engine can open, and syncing.
_ACCOUNTS_DUE = f"""
    SELECT id FROM mailbox_account
     WHERE active AND sync_enabled AND auth_state = 'ok' AND provider = ANY(%s::varchar[])
       AND (backoff_until IS NULL OR backoff_until <= {_NOW})
"""
