"""``maildesk_account_lease``: one holder per (account, purpose) at a time.

A lease is a row with an expiry, not a PostgreSQL lock, because it must be
seen by workers on other hosts while the holder's transaction is still
open (sync commits per batch). Every call runs in its own short
transaction (``transaction`` is a context manager yielding a cursor and
committing on exit), so taking a lease never waits behind a long sync.
A worker that dies simply stops renewing; its lease expires.
"""

TABLE = "maildesk_account_lease"

#: every column this module writes; an Odoo test checks they are model fields
COLUMNS = ("account_id", "purpose", "holder", "acquired_at", "expires_at")

_NOW = "(clock_timestamp() AT TIME ZONE 'UTC')"


class AccountLeaseRepository:
    def __init__(self, transaction):
        self.transaction = transaction

    def acquire(self, account_id, purpose, holder, ttl_seconds):
        """True when ``holder`` now holds the lease (new, expired, or its own)."""
        with self.transaction() as cr:
            cr.execute(
                f"""
                INSERT INTO {TABLE} (account_id, purpose, holder, acquired_at, expires_at,
                                     create_date, write_date)
                VALUES (%(account)s, %(purpose)s, %(holder)s, {_NOW},
                        {_NOW} + make_interval(secs => %(ttl)s), {_NOW}, {_NOW})
                ON CONFLICT (account_id, purpose) DO UPDATE
                   SET holder = EXCLUDED.holder, acquired_at = EXCLUDED.acquired_at,
                       expires_at = EXCLUDED.expires_at, write_date = EXCLUDED.write_date
                 WHERE {TABLE}.expires_at <= {_NOW} OR {TABLE}.holder = EXCLUDED.holder
                RETURNING id
                """,
                {"account": account_id, "purpose": purpose, "holder": holder, "ttl": ttl_seconds},
            )
            return cr.fetchone() is not None

    def renew(self, account_id, purpose, holder, ttl_seconds):
        """Extend a lease we hold. False means it expired and someone else took it."""
        with self.transaction() as cr:
            cr.execute(
                f"""
                UPDATE {TABLE}
                   SET expires_at = {_NOW} + make_interval(secs => %s), write_date = {_NOW}
                 WHERE account_id = %s AND purpose = %s AND holder = %s
                """,
                [ttl_seconds, account_id, purpose, holder],
            )
            return cr.rowcount == 1

    def release(self, account_id, purpose, holder):
        with self.transaction() as cr:
            cr.execute(
                f"DELETE FROM {TABLE} WHERE account_id = %s AND purpose = %s AND holder = %s",
                [account_id, purpose, holder],
            )

    def holder_of(self, account_id, purpose):
        with self.transaction() as cr:
            cr.execute(
                f"SELECT holder FROM {TABLE} WHERE account_id = %s AND purpose = %s AND expires_at > {_NOW}",
                [account_id, purpose],
            )
            row = cr.fetchone()
            return row[0] if row else None
