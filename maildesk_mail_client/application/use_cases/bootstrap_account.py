"""Flow 1: connect an account and fill its folders newest first.

The first run does the least that lets the user read mail: discover the
folders and index the newest ``first_chunk`` messages of INBOX, then ends,
so its single bus notification reaches the inbox within seconds. Later
runs (re-queued at once through the cron's progress report) fill every
folder in capped chunks up to ``bootstrap_limit``; older history is left
to the lower-priority backfill.
"""

from ..domain import BackfillState, FolderSyncState
from .account_run import run_on_account
from .discover_folders import discover_folders
from .folder_steps import folder_errors, open_folder, pin_top, walk_down

_PENDING = (FolderSyncState.NEW, FolderSyncState.BOOTSTRAP)


def bootstrap_account(ctx, account_id, deadline):
    """Returns the run's report (``remaining`` = folders still bootstrapping), or None if busy."""
    return run_on_account(ctx, account_id, lambda run: _bootstrap(run, deadline))


def _bootstrap(run, deadline):
    discover_folders(run)
    folders = [f for f in run.ctx.folders.list_for_account(run.account_id)
               if f.selectable and f.sync_state in _PENDING]
    inbox = next((f for f in folders if f.is_inbox), None)
    if inbox is not None and inbox.sync_state == FolderSyncState.NEW:
        _bootstrap_folder(run, inbox, deadline, first_chunk=run.settings.first_chunk,
                          max_messages=run.settings.first_chunk)
    else:
        for folder in folders:
            if run.ctx.clock.monotonic() >= deadline:
                break
            _bootstrap_folder(run, folder, deadline)
    # A folder that failed waits for the next scheduled run, not an immediate one.
    run.report.remaining = sum(
        1 for f in run.ctx.folders.list_for_account(run.account_id)
        if f.selectable and f.sync_state in _PENDING and f.id not in run.report.folders_failed
    )


def _bootstrap_folder(run, folder, deadline, first_chunk=None, max_messages=None):
    with folder_errors(run, folder):
        _fill(run, folder, deadline, first_chunk, max_messages)


def _fill(run, folder, deadline, first_chunk, max_messages):
    status = open_folder(run, folder)
    if status is None:  # reset: UIDVALIDITY changed under us
        status = open_folder(run, folder)
    if folder.sync_state == FolderSyncState.NEW:
        pin_top(folder, status)
        run.checkpoint(folder)
    quota = max(run.settings.bootstrap_limit - folder.bootstrap_indexed, 0)
    if max_messages is not None:
        quota = min(quota, max_messages)
    walk_down(run, folder, quota, deadline, first_chunk=first_chunk)
    if folder.bootstrap_indexed >= run.settings.bootstrap_limit or folder.backfill_state == BackfillState.DONE:
        folder.sync_state = FolderSyncState.INCREMENTAL
        run.checkpoint(folder)
