"""One unit of sync work on one account, start to finish.

Every use case that talks to a mail server runs inside :func:`run_on_account`,
which owns the rules that must hold for all of them, whatever the provider:

- one worker per account: the ``sync`` lease, renewed at every checkpoint;
  a lease lost to a race is "busy", never a failure;
- errors become account state the admin can see, never a silent skip:
  a refused login or missing setting asks for a reconnect, a network error
  backs off exponentially with a cap, anything else is recorded and backed
  off too (errors of one folder are the folder's: see folder_steps.py);
- a transaction that lost a REPEATABLE READ race to another worker is
  rolled back to the last checkpoint and retried by the next run;
- at most one bus notification per run, and only when something changed.
"""

import datetime as dt
import logging

from ..domain import SyncReport
from ..errors import MailboxError
from .discover_folders import check_identity

_logger = logging.getLogger(__name__)

SYNC_LEASE = "sync"


class LeaseLost(MailboxError):
    """Our lease expired and another worker took the account: stop at once."""


class AccountRun:
    """What a use case gets while it holds an account: the mailbox and a checkpoint."""

    def __init__(self, ctx, account_id, mailbox, report):
        self.ctx = ctx
        self.account_id = account_id
        self.mailbox = mailbox
        self.report = report
        self.settings = ctx.settings
        self._warnings = {}  # folder id -> what the admin should see on that folder

    def checkpoint(self, folder=None, synced=False):
        """Save cursors and commit, so a crash resumes here.

        The lease is renewed first: a worker whose lease ran out must not
        commit over the work of the one that took the account over.
        """
        if folder is not None:
            self.ctx.folders.save_cursors(folder, synced=synced)
            if folder.id in self._warnings:
                self.ctx.folders.record_warning(folder.id, self._warnings.pop(folder.id))
        self.keep_lease()
        self.ctx.checkpoint.commit()
        self.report.mark_committed()

    def limit_waits(self, deadline):
        """Tell a mailbox that can wait (a throttled provider's Retry-After) when the run must be over:
        an optional ``deadline`` attribute (time.monotonic()); a wait past it ends the run instead."""
        if hasattr(self.mailbox, "deadline"):
            self.mailbox.deadline = deadline

    def keep_lease(self):
        if not self.ctx.leases.renew(self.account_id, SYNC_LEASE, self.ctx.holder, self.settings.lease_ttl):
            raise LeaseLost(f"Account {self.account_id}: sync lease lost to another worker.")

    def rollback(self):
        """Undo the work since the last checkpoint, and stop counting it."""
        self.ctx.checkpoint.rollback()
        self.report.discard_uncommitted()
        self._warnings.clear()

    def warn(self, folder, message):
        """Shown on the folder (``warning``) with its next checkpoint, so a rollback takes it back too."""
        self._warnings[folder.id] = message

    def record_upserts(self, folder, results):
        """Count what changed and hand every changed row to the after-upsert hook."""
        if not results:
            return
        for result in results:
            if result.is_new:
                self.report.new += 1
            else:
                self.report.updated += 1
        self.report.folders_changed.add(folder.id)
        self._call_hooks(folder, results)

    def _call_hooks(self, folder, results):
        """One call per step; an add-on's hook that raises costs only the rows it raised on.

        The batch runs in a savepoint; if it raises, each row gets its own,
        so the rows it accepts keep what it wrote. Rows it refuses are
        logged with the traceback and named on the folder; the index rows
        themselves are stored all the same: a poison message never holds
        the account back.
        """
        hooks, savepoint = self.ctx.hooks, self.ctx.checkpoint.savepoint
        try:
            with savepoint():
                hooks.after_upsert(self.account_id, folder.id, results)
            return
        except self.ctx.conflicts:
            raise
        except Exception:  # an add-on's bug; isolated below, row by row
            _logger.info("Folder %s: the after-upsert hook failed on a batch; retrying row by row.", folder.id)
        failed = []
        for result in results:
            try:
                with savepoint():
                    hooks.after_upsert(self.account_id, folder.id, [result])
            except self.ctx.conflicts:
                raise
            except Exception:  # logged with its traceback, and shown on the folder
                _logger.exception("Folder %s: the after-upsert hook failed on message %s (index row %s).",
                                  folder.id, result.remote_id, result.index_id)
                failed.append(result.remote_id)
        if failed:
            self.report.hook_failures += len(failed)
            self.warn(folder, f"An add-on failed to process {len(failed)} message(s) after indexing "
                              f"(see the server log): {', '.join(failed[:10])}")


def backoff_delay(settings, failures):
    """Seconds to wait after the ``failures``-th failure in a row: 1, 2, 4, ... x base, capped."""
    return min(settings.backoff_cap, settings.backoff_base * 2 ** max(failures - 1, 0))


def run_on_account(ctx, account_id, work):
    """Run ``work(run)`` under the account's lease. Returns the report, or None if busy.

    ``work`` fills ``run.report`` as it goes, so what was committed before a
    failure is still announced on the bus.
    """
    if not _acquire(ctx, account_id):
        _logger.debug("Account %s is being synced by another worker; skipped.", account_id)
        return None
    report = SyncReport(account_id=account_id)
    try:
        _run(ctx, account_id, work, report)
    finally:
        ctx.leases.release(account_id, SYNC_LEASE, ctx.holder)
    return report


def _acquire(ctx, account_id):
    try:
        return ctx.leases.acquire(account_id, SYNC_LEASE, ctx.holder, ctx.settings.lease_ttl)
    except ctx.conflicts:
        return False  # another worker won the race for the lease row: busy


def _run(ctx, account_id, work, report):
    edited_at = ctx.accounts.edited_at(account_id)
    ctx.checkpoint.commit()  # a fresh snapshot for the work, so it sees the latest committed state
    try:
        mailbox = ctx.mailboxes(account_id)
        try:
            run = AccountRun(ctx, account_id, mailbox, report)
            check_identity(run)
            work(run)
        finally:
            mailbox.close()
    except LeaseLost:
        # The new holder owns the account's state now: record nothing.
        _logger.warning("Account %s: lease lost mid-run; the new holder carries on.", account_id)
        _roll_back(ctx, report)
    except ctx.conflicts as error:
        # Another worker or a user changed a row this run meant to write: what
        # was committed stays, the rest is done again by the next run.
        _logger.info("Account %s: concurrent update (%s); the next run carries on.", account_id, error)
        _roll_back(ctx, report)
        report.remaining += 1
    except MailboxError as error:
        _roll_back(ctx, report)
        message = str(error)
        if error.transient:
            _record_state(ctx, account_id, lambda: _record_failure(ctx, account_id, message))
        else:
            # Retrying a refused password only gets the mailbox locked: wait for a person.
            _logger.warning("Account %s needs to be reconnected: %s", account_id, message)
            _record_state(ctx, account_id,
                          lambda: ctx.accounts.record_reconnect_needed(account_id, message, edited_at))
    except Exception as error:
        # A bug or a broken row must not stop the other accounts, but it must
        # be seen: logged with its traceback and shown on the account.
        _logger.exception("Account %s: unexpected error during sync", account_id)
        _roll_back(ctx, report)
        message = f"Unexpected error: {error!r}"
        _record_state(ctx, account_id, lambda: _record_failure(ctx, account_id, message))
    else:
        _record_state(ctx, account_id, lambda: ctx.accounts.record_success(account_id, ctx.clock.now()))
    # Announced with the run's last commit, also after a failure half-way:
    # the report then counts only what earlier checkpoints committed.
    if report.changed:
        ctx.notifier.index_changed(report)
    ctx.checkpoint.commit()


def _record_state(ctx, account_id, record):
    """Write the account's sync state in a transaction of its own, once more if a user's save raced it.

    The work is committed already: a REPEATABLE READ conflict on the account
    row (someone saved the form meanwhile) must not turn into a failed job.
    """
    ctx.checkpoint.commit()
    for attempt in (1, 2):
        try:
            record()
            ctx.checkpoint.commit()
            return
        except ctx.conflicts:
            ctx.checkpoint.rollback()
            if attempt == 2:
                _logger.info("Account %s: its sync state could not be saved (concurrent edits); "
                             "the next run saves it.", account_id)


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
