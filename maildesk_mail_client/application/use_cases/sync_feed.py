"""Flow 2 for a provider whose changes come per account (Gmail's history).

One feed tells what changed anywhere in the mailbox since a stored
cursor. Each step is applied and committed with the cursor it makes true,
so a killed worker resumes after the last step it stored; the cursor never
moves backwards. Steps are state, not events (a message's current
folders and flags), so a step applied twice changes nothing the second time.

The feed does not report folders renamed or deleted (Gmail keeps no history
of labels), so folders are listed again every ``folder_listing_interval``,
and at once when a step names a folder not listed yet.

An expired cursor (Gmail's 404) loses nothing: a fresh cursor is taken
*before* anything is compared, then every folder is reconciled with the
server by id (``sync_folder`` with a reconciliation), which writes only
rows that differ, so no hook fires for unchanged mail.
"""

import datetime as dt
import logging

from ..domain import FolderSyncState
from ..errors import CursorExpired
from ..folder_steps import folder_errors, place
from .discover_folders import discover_folders
from .sync_folder import reconcile_due, sync_folder

_logger = logging.getLogger(__name__)

_NEVER = dt.datetime.min


def start_feed(run):
    """Store the account's first cursor, taken before any listing, so nothing between slips through."""
    if run.ctx.accounts.feed_cursor(run.account_id) is None:
        run.ctx.accounts.save_feed_cursor(run.account_id, run.mailbox.start_cursor(), reset=True)
        run.checkpoint()


def sync_feed(run, deadline):
    """One pass over the account's feed, then any folder reconciliation that is due."""
    ctx = run.ctx
    if _listing_due(run):
        discover_folders(run)
    start_feed(run)
    cursor = ctx.accounts.feed_cursor(run.account_id)
    try:
        if not _follow(run, cursor, deadline):
            run.report.remaining += 1
            return
    except CursorExpired as error:
        _restart(run, str(error))
    _reconcile_due_folders(run, deadline)


def _follow(run, cursor, deadline):
    folders = _folders_by_remote_id(run)
    listed = False
    for delta in run.mailbox.account_changes(cursor, run.settings):
        if not listed and (delta.unknown_folders or _names_unknown(delta, folders)):
            # Once per pass: a folder the listing does not show either is not one to file mail in.
            discover_folders(run)
            folders = _folders_by_remote_id(run)
            listed = True
        apply_account_delta(run, folders, delta)
        if delta.cursor is not None and run.ctx.clock.monotonic() >= deadline:
            return False
    return True


def apply_account_delta(run, folders, delta):
    """Store one step of the feed and its cursor, and commit them together."""
    ctx, account_id = run.ctx, run.account_id
    by_id = {folder.id: folder for folder in folders.values()}
    place(run, folders, delta.placements, delta.removed)
    changed = {}
    for folder_id, row in ctx.index.update_flags_everywhere(account_id, delta.flags):
        changed.setdefault(folder_id, []).append(row)
    for folder_id, rows in changed.items():
        if folder_id in by_id:
            run.record_upserts(by_id[folder_id], rows)
    if delta.cursor is not None:
        ctx.accounts.save_feed_cursor(account_id, delta.cursor)
    run.checkpoint()


def _restart(run, why):
    """A fresh cursor first, then every folder compared with the server by id."""
    _logger.warning("Account %s: %s; taking a fresh cursor and reconciling every folder.", run.account_id, why)
    run.ctx.accounts.save_feed_cursor(run.account_id, run.mailbox.start_cursor(), reset=True)
    for folder in run.ctx.folders.list_for_account(run.account_id):
        # Due now (sync_folder.reconcile_due), from the start: a reconciliation under way
        # already passed over messages whose later changes were in the history we lost.
        folder.reconcile_cursor = folder.reconciled_at = None
        run.ctx.folders.save_cursors(folder)
    run.checkpoint()


def _reconcile_due_folders(run, deadline):
    """Folders whose reconciliation is due (after an expiry, or by the interval), INBOX first."""
    folders = sorted(
        (f for f in run.ctx.folders.list_for_account(run.account_id)
         if f.selectable and f.sync_state != FolderSyncState.NEW and reconcile_due(run, f)),
        key=lambda f: (not f.is_inbox, f.reconciled_at or _NEVER),
    )
    for position, folder in enumerate(folders):
        if run.ctx.clock.monotonic() >= deadline:
            run.report.remaining += len(folders) - position
            return
        with folder_errors(run, folder):
            if not sync_folder(run, folder, deadline):
                run.report.remaining += 1


def _listing_due(run):
    listed_at = run.ctx.accounts.folders_synced_at(run.account_id)
    if listed_at is None:
        return True
    return run.ctx.clock.now() - listed_at >= dt.timedelta(seconds=run.settings.folder_listing_interval)


def _folders_by_remote_id(run):
    return {folder.remote_id: folder for folder in run.ctx.folders.list_for_account(run.account_id)}


def _names_unknown(delta, folders):
    return any(key not in folders for placement in delta.placements for key in placement.folders)
