"""One unit of sync work on one account, start to finish.

Every use case that talks to a mail server runs inside :func:`run_on_account`,
which owns the rules that must hold for all of them:

- one worker per account: the ``sync`` lease, renewed at every checkpoint;
- errors become account state the admin can see, never a silent skip:
  a refused login or missing setting asks for a reconnect, a network error
  backs off exponentially with a cap, anything else is recorded and backed
  off too (errors of one folder are the folder's: see folder_steps.py);
- at most one bus notification per run, and only when something changed.
"""

import datetime as dt
import logging

from ..domain import SyncReport
from ..errors import MailboxError

_logger = logging.getLogger(__name__)

SYNC_LEASE = "sync"


class LeaseLost(MailboxError):
    """Our lease expired and another worker took the account: stop at once."""


class AccountRun:
    """What a use case gets while it holds an account: the session and a checkpoint."""

    def __init__(self, ctx, account_id, session, report):
        self.ctx = ctx
        self.account_id = account_id
        self.session = session
        self.report = report
        self.settings = ctx.settings

    def checkpoint(self, folder=None):
        """Save cursors and commit, so a crash resumes here.

        The lease is renewed first: a worker whose lease ran out must not
        commit over the work of the one that took the account over.
        """
        if folder is not None:
            self.ctx.folders.save_cursors(folder)
        self.keep_lease()
        self.ctx.checkpoint.commit()
        self.report.mark_committed()

    def keep_lease(self):
        if not self.ctx.leases.renew(self.account_id, SYNC_LEASE, self.ctx.holder, self.settings.lease_ttl):
            raise LeaseLost(f"Account {self.account_id}: sync lease lost to another worker.")

    def rollback(self):
        """Undo the work since the last checkpoint, and stop counting it."""
        self.ctx.checkpoint.rollback()
        self.report.discard_uncommitted()

    def record_upserts(self, folder, results):
        """Count what changed and tell the hook about every changed row."""
        for result in results:
            if result.is_new:
                self.report.new += 1
            else:
                self.report.updated += 1
            self.ctx.hooks.after_upsert(self.account_id, folder.id, result.uid, result.index_id, result.is_new)
        if results:
            self.report.folders_changed.add(folder.id)


def backoff_delay(settings, failures):
    """Seconds to wait after the ``failures``-th failure in a row: 1, 2, 4, ... x base, capped."""
    return min(settings.backoff_cap, settings.backoff_base * 2 ** max(failures - 1, 0))


def run_on_account(ctx, account_id, work):
    """Run ``work(run)`` under the account's lease. Returns the report, or None if busy.

    ``work`` fills ``run.report`` as it goes, so what was committed before a
    failure is still announced on the bus.
    """
    if not ctx.leases.acquire(account_id, SYNC_LEASE, ctx.holder, ctx.settings.lease_ttl):
        _logger.debug("Account %s is being synced by another worker; skipped.", account_id)
        return None
    report = SyncReport(account_id=account_id)
    try:
        _run(ctx, account_id, work, report)
    finally:
        ctx.leases.release(account_id, SYNC_LEASE, ctx.holder)
    return report


def _run(ctx, account_id, work, report):
    started = ctx.clock.now()
    try:
        session = ctx.sessions(account_id)
        try:
            work(AccountRun(ctx, account_id, session, report))
        finally:
            session.close()
    except LeaseLost:
        # The new holder owns the account's state now: record nothing.
        _logger.warning("Account %s: lease lost mid-run; the new holder carries on.", account_id)
        _roll_back(ctx, report)
    except MailboxError as error:
        _roll_back(ctx, report)
        if error.transient:
            _record_failure(ctx, account_id, str(error))
        else:
            # Retrying a refused password only gets the mailbox locked: wait for a person.
            _logger.warning("Account %s needs to be reconnected: %s", account_id, error)
            ctx.accounts.record_reconnect_needed(account_id, str(error), since=started)
    except Exception as error:
        # A bug or a broken row must not stop the other accounts, but it must
        # be seen: logged with its traceback and shown on the account.
        _logger.exception("Account %s: unexpected error during sync", account_id)
        _roll_back(ctx, report)
        _record_failure(ctx, account_id, f"Unexpected error: {error!r}")
    else:
        ctx.accounts.record_success(account_id, ctx.clock.now())
    # Announced with the run's last commit, also after a failure half-way:
    # the report then counts only what earlier checkpoints committed.
    if report.changed:
        ctx.notifier.index_changed(report)
    ctx.checkpoint.commit()


def _roll_back(ctx, report):
    ctx.checkpoint.rollback()
    report.discard_uncommitted()


def _record_failure(ctx, account_id, message):
    failures = ctx.accounts.failure_count(account_id) + 1
    delay = backoff_delay(ctx.settings, failures)
    until = ctx.clock.now() + dt.timedelta(seconds=delay)
    _logger.warning("Account %s: sync failed (%s in a row), retry after %ss: %s",
                    account_id, failures, delay, message)
    ctx.accounts.record_failure(account_id, message, failures, until)
