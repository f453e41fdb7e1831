"""The engine's ports over psycopg2, as the engine tests use them.

The stores are the production repositories; only the Odoo-specific ports
(hooks, bus, cron scheduler) are replaced by recorders the tests inspect.
"""

import contextlib
import dataclasses
import time
import uuid

from maildesk_mail_client.application.ports import EngineContext, SyncSettings
from maildesk_mail_client.repositories import (
    AccountLeaseRepository,
    AccountRepository,
    FolderRepository,
    MessageIndexRepository,
)


class RecordingHooks:
    def __init__(self):
        self.calls = []

    def after_upsert(self, account_id, folder_id, uid, index_id, is_new):
        self.calls.append((account_id, folder_id, uid, index_id, is_new))


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

    def commit(self):
        self.conn.commit()

    def rollback(self):
        self.conn.rollback()


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


def make_context(conn, connect, sessions, settings=None, holder=None):
    cr = conn.cursor()
    return EngineContext(
        folders=FolderRepository(cr),
        index=MessageIndexRepository(cr),
        leases=AccountLeaseRepository(lease_transaction(connect)),
        accounts=AccountRepository(cr),
        sessions=sessions,
        hooks=RecordingHooks(),
        notifier=RecordingNotifier(),
        scheduler=RecordingScheduler(),
        clock=UtcClock(),
        checkpoint=ConnectionCheckpoint(conn),
        settings=settings or SyncSettings(),
        holder=holder or f"test:{uuid.uuid4().hex[:8]}",
    )


def create_account(conn, name="acct", provider="imap"):
    with conn.cursor() as cr:
        cr.execute("INSERT INTO mailbox_account (name, provider) VALUES (%s, %s) RETURNING id", [name, provider])
        account_id = cr.fetchone()[0]
    conn.commit()
    return account_id


def replace_settings(settings, **changes):
    return dataclasses.replace(settings, **changes)
