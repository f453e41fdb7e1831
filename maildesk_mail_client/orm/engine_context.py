"""Build the engine's :class:`EngineContext` on an Odoo environment.

The stores run their SQL on ``env.cr``; leases get a cursor of their own
that commits at once (see repositories/account_lease.py). Cron runs commit
at every checkpoint; under the test runner, where a commit would break the
test transaction, checkpoints are savepoints instead — the same idiom as
mail's ``auto_commit`` in ``mail.mail``.
"""

import contextlib
import dataclasses
import datetime as dt
import os
import socket
import threading
import time
import uuid

from ..application.ports import EngineContext, SyncSettings
from ..repositories import (
    AccountLeaseRepository,
    AccountRepository,
    FolderRepository,
    MessageIndexRepository,
)
from ..repositories.conflicts import CONFLICTS
from ..repositories.lease_holders import is_dead_local_holder
from ..repositories.mailbox_account import PROVIDERS
from ..repositories.message_index import ROW_ERRORS


def lease_holder():
    """host:pid:nonce. Read at each run, not at import: prefork workers are forked after
    the import, and a dead worker is recognised by its own pid (lease_holders.py)."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


def _testing():
    return getattr(threading.current_thread(), "testing", False)


class OdooCheckpoint:
    """Commit (or, under tests, move a savepoint) so work so far is durable."""

    _SAVEPOINT = "maildesk_checkpoint"

    def __init__(self, env):
        self.env = env
        self.auto_commit = not _testing()
        # The engine reads and writes in SQL: pending ORM writes must be in
        # the database first, and outside what a rollback may undo.
        env.flush_all()
        if not self.auto_commit:
            env.cr.execute(f"SAVEPOINT {self._SAVEPOINT}")

    def commit(self):
        self.env.flush_all()
        if self.auto_commit:
            # The engine's checkpoints are the point: a crash must resume after
            # the last saved chunk, not redo a whole cron run.
            self.env.cr.commit()  # pylint: disable=invalid-commit
        else:
            self.env.cr.execute(f"RELEASE SAVEPOINT {self._SAVEPOINT}; SAVEPOINT {self._SAVEPOINT}")

    def rollback(self):
        if self.auto_commit:
            self.env.cr.rollback()  # pylint: disable=invalid-commit
        else:
            self.env.cr.execute(f"ROLLBACK TO SAVEPOINT {self._SAVEPOINT}")
        self.env.invalidate_all()

    def savepoint(self):
        return self.env.cr.savepoint()


class OdooHooks:
    def __init__(self, env):
        self.env = env

    def after_upsert(self, account_id, folder_id, rows):
        self.env["mailbox.account"]._maildesk_after_message_index_upserted_batch(
            account_id, self.env["maildesk.folder"].browse(folder_id), rows
        )


class OdooNotifier:
    def __init__(self, env):
        self.env = env

    def index_changed(self, report):
        self.env["mailbox.account"].browse(report.account_id)._maildesk_notify_index_changed(report.as_payload())
        if report.new:
            # New mail may be for an Odoo alias: the scan looks now rather than at its next 3-minute tick.
            self.env.ref("maildesk_mail_client.ir_cron_maildesk_alias_scan").sudo()._trigger()


class OdooScheduler:
    def __init__(self, env):
        self.env = env

    def wake_bootstrap(self):
        self.env.ref("maildesk_mail_client.ir_cron_maildesk_bootstrap")._trigger()


class OdooClock:
    def now(self):
        # Naive UTC like Odoo's columns, but with microseconds (fields.Datetime.now()
        # drops them), so it compares right with write_date.
        return dt.datetime.now(dt.timezone.utc).replace(tzinfo=None)

    def monotonic(self):
        return time.monotonic()


def lease_transaction(env):
    """A context manager giving each lease call a short transaction of its own.

    Under the test runner the records under test are not committed, so
    another connection could not see them: a savepoint on the test cursor
    stands in. The engine tests prove the real, separate-connection path.
    """

    @contextlib.contextmanager
    def transaction():
        if _testing():
            with env.cr.savepoint():
                yield env.cr
        else:
            with env.registry.cursor() as cr:
                yield cr

    return transaction


def mailbox_factory(env, settings):
    from .mailboxes import open_mailbox  # it needs this module's _testing

    def open_account_mailbox(account_id):
        # sudo: the cron user needs the password and tokens, which only admins may read.
        return open_mailbox(env["mailbox.account"].sudo().browse(account_id), settings)

    return open_account_mailbox


def settings_from_params(env):
    """SyncSettings, with the chunk sizes and bound admins may tune as system parameters."""
    params = env["ir.config_parameter"].sudo()
    defaults = SyncSettings()
    return dataclasses.replace(defaults, **{
        name: int(params.get_param(f"maildesk.{name}", getattr(defaults, name)))
        for name in ("first_chunk", "chunk", "bootstrap_limit", "search_window", "reconcile_interval",
                     "refetch_attempts", "folder_listing_interval")
    })


def engine_context(env, mailboxes=None):
    """The engine's ports on ``env``. ``mailboxes`` replaces the provider connector (tests)."""
    cr = env.cr
    settings = settings_from_params(env)
    return EngineContext(
        folders=FolderRepository(cr),
        index=MessageIndexRepository(cr),
        leases=AccountLeaseRepository(lease_transaction(env), is_dead=is_dead_local_holder),
        accounts=AccountRepository(cr),
        mailboxes=mailboxes or mailbox_factory(env, settings),
        hooks=OdooHooks(env),
        notifier=OdooNotifier(env),
        scheduler=OdooScheduler(env),
        clock=OdooClock(),
        checkpoint=OdooCheckpoint(env),
        settings=settings,
        holder=lease_holder(),
        conflicts=CONFLICTS,
        row_errors=ROW_ERRORS,
        providers=PROVIDERS,
    )
