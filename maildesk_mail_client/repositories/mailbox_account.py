"""``mailbox_account``: which accounts are due, and their sync state."""

TABLE = "mailbox_account"

#: every provider the engine syncs; an account's ``provider`` is one of them
PROVIDERS = ("imap", "gmail", "outlook")

#: every column this module writes; an Odoo test checks they are model fields
COLUMNS = (
    "auth_state", "failure_count", "backoff_until", "last_sync_at", "last_error",
    "last_error_at", "folders_synced_at", "mailbox_identity", "gmail_history_id",
)

_DUE = f"""
    SELECT a.id FROM {TABLE} a
     WHERE a.active AND a.sync_enabled AND a.provider = %(provider)s AND a.auth_state = 'ok'
       AND (a.backoff_until IS NULL OR a.backoff_until <= now() AT TIME ZONE 'UTC')
"""


class AccountRepository:
    def __init__(self, cr):
        self.cr = cr

    def due_for_sync(self, provider, limit=None):
        """Accounts to visit, least recently synced first, so none starves."""
        self.cr.execute(
            _DUE + " ORDER BY a.last_sync_at ASC NULLS FIRST, a.id LIMIT %(limit)s",
            {"provider": provider, "limit": limit},
        )
        return [account_id for (account_id,) in self.cr.fetchall()]

    def due_for_bootstrap(self, provider, limit=None):
        """Accounts never discovered, or with folders still filling newest-first."""
        self.cr.execute(
            _DUE + """
               AND (a.folders_synced_at IS NULL OR EXISTS (
                        SELECT 1 FROM maildesk_folder f
                         WHERE f.account_id = a.id AND f.selectable
                           AND f.sync_state IN ('new', 'bootstrap')))
             ORDER BY a.last_sync_at ASC NULLS FIRST, a.id LIMIT %(limit)s
            """,
            {"provider": provider, "limit": limit},
        )
        return [account_id for (account_id,) in self.cr.fetchall()]

    def mark_folders_synced(self, account_id):
        self.cr.execute(
            f"UPDATE {TABLE} SET folders_synced_at = now() AT TIME ZONE 'UTC' WHERE id = %s",
            [account_id],
        )

    def folders_synced_at(self, account_id):
        self.cr.execute(f"SELECT folders_synced_at FROM {TABLE} WHERE id = %s", [account_id])
        row = self.cr.fetchone()
        return row[0] if row else None

    def edited_at(self, account_id):
        self.cr.execute(f"SELECT write_date FROM {TABLE} WHERE id = %s", [account_id])
        row = self.cr.fetchone()
        return row[0] if row else None

    def identity(self, account_id):
        self.cr.execute(f"SELECT mailbox_identity FROM {TABLE} WHERE id = %s", [account_id])
        row = self.cr.fetchone()
        return row[0] if row else None

    def set_identity(self, account_id, identity):
        self.cr.execute(f"UPDATE {TABLE} SET mailbox_identity = %s WHERE id = %s", [identity, account_id])

    def feed_cursor(self, account_id):
        """Gmail's historyId, the only account-wide cursor so far (int8: a historyId is 64-bit)."""
        self.cr.execute(f"SELECT gmail_history_id FROM {TABLE} WHERE id = %s", [account_id])
        row = self.cr.fetchone()
        return str(row[0]) if row and row[0] is not None else None

    def save_feed_cursor(self, account_id, cursor, reset=False):
        # GREATEST: a worker that lost a race with a newer run must not take the account back in time.
        value = "%s::int8" if reset else "GREATEST(gmail_history_id, %s::int8)"
        self.cr.execute(f"UPDATE {TABLE} SET gmail_history_id = {value} WHERE id = %s",
                        [int(cursor) if cursor is not None else None, account_id])

    def failure_count(self, account_id):
        self.cr.execute(f"SELECT failure_count FROM {TABLE} WHERE id = %s", [account_id])
        row = self.cr.fetchone()
        return (row[0] or 0) if row else 0

    def record_success(self, account_id, when):
        self.cr.execute(
            f"""
            UPDATE {TABLE}
               SET last_sync_at = %s, failure_count = 0, backoff_until = NULL,
                   last_error = NULL, last_error_at = NULL
             WHERE id = %s
            """,
            [when, account_id],
        )

    def record_failure(self, account_id, message, failures, backoff_until):
        self.cr.execute(
            f"""
            UPDATE {TABLE}
               SET failure_count = %s, backoff_until = %s,
                   last_error = %s, last_error_at = now() AT TIME ZONE 'UTC'
             WHERE id = %s
            """,
            [failures, backoff_until, message, account_id],
        )

    def record_reconnect_needed(self, account_id, message, edited_at):
        """Unless the account was saved again since ``edited_at``, read when the run
        started: the password fixed while this run was failing must not be marked
        bad. Both dates are the database's, so no two clocks are compared."""
        self.cr.execute(
            f"""
            UPDATE {TABLE}
               SET auth_state = 'reconnect_needed', last_error = %s,
                   last_error_at = now() AT TIME ZONE 'UTC'
             WHERE id = %s AND write_date IS NOT DISTINCT FROM %s
            """,
            [message, account_id, edited_at],
        )
