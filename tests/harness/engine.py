"""The engine's ports over psycopg2, as the engine tests use them.

The stores are the production repositories; only the Odoo-specific ports
(hooks, bus, cron scheduler) are replaced by recorders the tests inspect.
"""

import contextlib
import dataclasses
import time

from maildesk_mail_client.application.ports import EngineContext, SyncSettings
from maildesk_mail_client.orm.engine_context import lease_holder
from maildesk_mail_client.repositories import (
    AccountLeaseRepository,
    AccountRepository,
    FolderRepository,
    MessageIndexRepository,
)
from maildesk_mail_client.repositories.conflicts import CONFLICTS
from maildesk_mail_client.repositories.lease_holders import is_dead_local_holder
from maildesk_mail_client.repositories.message_index import ROW_ERRORS


class RecordingHooks:
    """Records one (account, folder, uid, index id, is_new) per row, as the per-row hook sees them."""

    def __init__(self):
        self.calls = []
        self.batches = 0

    def after_upsert(self, account_id, folder_id, rows):
        self.batches += 1
        self.calls.extend((account_id, folder_id, row.uid, row.index_id, row.is_new) for row in rows)


class RecordingNotifier:
    def __init__(self):
        self.reports = []

    def index_changed(self, report):
        self.reports.append(report.as_payload())


class RecordingScheduler:
    def __init__(self):
        self.wakes = 0

    def wake_bootstrap(self):
        self.wakes += 1


class UtcClock:
    def now(self):
        import datetime as dt

        return dt.datetime.now(dt.timezone.utc).replace(tzinfo=None)

    def monotonic(self):
        return time.monotonic()


class ConnectionCheckpoint:
    def __init__(self, conn):
        self.conn = conn
        self._depth = 0

    def commit(self):
        self.conn.commit()

    def rollback(self):
        self.conn.rollback()

    @contextlib.contextmanager
    def savepoint(self):
        self._depth += 1
        name = f"engine_sp_{self._depth}"
        cr = self.conn.cursor()
        cr.execute(f"SAVEPOINT {name}")
        try:
            yield
        except BaseException:
            cr.execute(f"ROLLBACK TO SAVEPOINT {name}")
            raise
        else:
            cr.execute(f"RELEASE SAVEPOINT {name}")
        finally:
            self._depth -= 1


def lease_transaction(connect):
    """Each lease call on its own connection and transaction, as in Odoo."""

    @contextlib.contextmanager
    def transaction():
        conn = connect()
        try:
            with conn.cursor() as cr:
                yield cr
            conn.commit()
        finally:
            conn.close()

    return transaction


def make_context(conn, connect, mailboxes, settings=None, holder=None):
    cr = conn.cursor()
    return EngineContext(
        folders=FolderRepository(cr),
        index=MessageIndexRepository(cr),
        leases=AccountLeaseRepository(lease_transaction(connect), is_dead=is_dead_local_holder),
        accounts=AccountRepository(cr),
        mailboxes=mailboxes,
        hooks=RecordingHooks(),
        notifier=RecordingNotifier(),
        scheduler=RecordingScheduler(),
        clock=UtcClock(),
        checkpoint=ConnectionCheckpoint(conn),
        settings=settings or SyncSettings(),
        holder=holder or lease_holder(),
        conflicts=CONFLICTS,
        row_errors=ROW_ERRORS,
    )


def create_account(conn, name="acct", provider="imap"):
    with conn.cursor() as cr:
        cr.execute("INSERT INTO mailbox_account (name, provider) VALUES (%s, %s) RETURNING id", [name, provider])
        account_id = cr.fetchone()[0]
    conn.commit()
    return account_id


def replace_settings(settings, **changes):
    return dataclasses.replace(settings, **changes)
