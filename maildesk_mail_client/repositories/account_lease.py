"""``maildesk_account_lease``: one holder per (account, purpose) at a time.

A lease is a row with an expiry, not a PostgreSQL lock, because it must be
seen by workers on other hosts while the holder's transaction is still
open (sync commits per batch). Every call runs in its own short
transaction (``transaction`` is a context manager yielding a cursor and
committing on exit), so taking a lease never waits behind a long sync.
A worker that dies simply stops renewing; its lease expires, or a worker
on the same host sees its process is gone and takes over at once
(``is_dead``, see ``lease_holders.py``).

Isolation: Odoo's cursors run at REPEATABLE READ, where an ``INSERT … ON
CONFLICT DO UPDATE`` or ``UPDATE`` that meets a row committed after the
transaction's snapshot raises ``SerializationFailure``: with many workers
racing for one lease, some of them would fail instead of finding it busy.
Each call here is a single statement in a fresh transaction, so it runs at
READ COMMITTED instead, where PostgreSQL waits for the other writer and
re-checks the ``WHERE`` on the latest row version. Should a conflict still
come through (a caller's transaction already under way, as under Odoo's
test runner where a savepoint stands in), a lost race is "busy", never an
error.
"""

from psycopg2 import errorcodes, errors
from psycopg2.extensions import TRANSACTION_STATUS_IDLE

from .conflicts import CONFLICTS

TABLE = "maildesk_account_lease"

#: every column this module writes; an Odoo test checks they are model fields
COLUMNS = ("account_id", "purpose", "holder", "acquired_at", "expires_at")

_NOW = "(clock_timestamp() AT TIME ZONE 'UTC')"

# Losing a race for a lease: another worker has it, or is about to.
_LOST_RACE = (*CONFLICTS, errors.lookup(errorcodes.UNIQUE_VIOLATION))


def _read_committed(cr):
    """Run the transaction ``cr`` is about to open at READ COMMITTED.

    Only when no transaction is open yet: psycopg2 then sends ``BEGIN
    ISOLATION LEVEL REPEATABLE READ`` (the connection's level, as Odoo sets
    it) followed by this, which PostgreSQL accepts before the first query.
    Inside a transaction or savepoint it is refused, so it is skipped there.
    """
    conn = getattr(cr, "connection", None)  # Odoo's Cursor hands it through from psycopg2's
    info = getattr(conn, "info", None)
    if info is None or conn.autocommit or info.transaction_status != TRANSACTION_STATUS_IDLE:
        return
    cr.execute("SET TRANSACTION ISOLATION LEVEL READ COMMITTED")


class AccountLeaseRepository:
    def __init__(self, transaction, is_dead=None):
        self.transaction = transaction
        self.is_dead = is_dead  # holder string -> True when it is a process known to be gone

    def _run(self, statement, params):
        """``statement`` alone in a fresh READ COMMITTED transaction; its cursor's rowcount and first row."""
        with self.transaction() as cr:
            _read_committed(cr)
            cr.execute(statement, params)
            row = cr.fetchone() if cr.description else None
            return cr.rowcount, row

    def acquire(self, account_id, purpose, holder, ttl_seconds, is_dead=None):
        """True when ``holder`` now holds the lease (new, expired, or its own).

        False means busy, also when another worker won a race for it. With
        ``is_dead`` (``holder string -> bool``), a lease whose holder it says
        is dead is taken over (:meth:`take_over_if_dead`).
        """
        try:
            _rowcount, row = self._run(
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
        except _LOST_RACE:
            return False
        if row is not None:
            return True
        is_dead = is_dead or self.is_dead
        return is_dead is not None and self.take_over_if_dead(account_id, purpose, holder, ttl_seconds, is_dead)

    def take_over_if_dead(self, account_id, purpose, holder, ttl_seconds, is_dead):
        """Take a lease held by someone else whose holder ``is_dead(holder_string)`` says is gone.

        True when ``holder`` took it over. The swap only happens if the row
        still names the dead holder (compare-and-swap), so of two workers
        taking over at once exactly one wins. A free or expired lease is
        :meth:`acquire`'s business: False here.
        """
        current = self.holder_of(account_id, purpose)
        if current is None or current == holder or not is_dead(current):
            return False
        try:
            rowcount, _row = self._run(
                f"""
                UPDATE {TABLE}
                   SET holder = %(holder)s, acquired_at = {_NOW},
                       expires_at = {_NOW} + make_interval(secs => %(ttl)s), write_date = {_NOW}
                 WHERE account_id = %(account)s AND purpose = %(purpose)s AND holder = %(dead)s
                """,
                {"account": account_id, "purpose": purpose, "holder": holder, "ttl": ttl_seconds,
                 "dead": current},
            )
        except _LOST_RACE:
            return False
        return rowcount == 1

    def renew(self, account_id, purpose, holder, ttl_seconds):
        """Extend a lease we hold. False means it expired and someone else took it.

        A conflict with a concurrent writer is retried once in a fresh
        transaction, which sees that writer's outcome; if that conflicts
        too, False: the worker stops, and its lease expires.
        """
        for _attempt in range(2):
            try:
                rowcount, _row = self._run(
                    f"""
                    UPDATE {TABLE}
                       SET expires_at = {_NOW} + make_interval(secs => %s), write_date = {_NOW}
                     WHERE account_id = %s AND purpose = %s AND holder = %s
                    """,
                    [ttl_seconds, account_id, purpose, holder],
                )
            except CONFLICTS:
                continue
            return rowcount == 1
        return False

    def release(self, account_id, purpose, holder):
        """Give the lease up if ``holder`` still holds it. True when it did.

        A conflict is retried once; if it persists the lease simply expires.
        """
        for _attempt in range(2):
            try:
                rowcount, _row = self._run(
                    f"DELETE FROM {TABLE} WHERE account_id = %s AND purpose = %s AND holder = %s",
                    [account_id, purpose, holder],
                )
            except CONFLICTS:
                continue
            return rowcount == 1
        return False

    def holder_of(self, account_id, purpose):
        _rowcount, row = self._run(
            f"SELECT holder FROM {TABLE} WHERE account_id = %s AND purpose = %s AND expires_at > {_NOW}",
            [account_id, purpose],
        )
        return row[0] if row else None
