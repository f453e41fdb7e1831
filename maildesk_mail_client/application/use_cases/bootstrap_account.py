"""Flow 1: connect an account and fill its folders newest first.

The first run does the least that lets the user read mail: discover the
folders and index the newest ``first_chunk`` messages of INBOX, then ends,
so its single bus notification reaches the inbox within seconds. Later
runs (re-queued at once through the cron's progress report) fill every
folder in capped chunks up to ``bootstrap_limit``; older history is left
to the lower-priority backfill.

An INBOX that fails its first chunk does not hold the other folders back:
the same run carries on with them, and INBOX is tried again next run.
"""

from ..domain import BackfillState, FolderSyncState
from ..folder_steps import folder_errors, open_folder, pin_top, walk_down
from .account_run import run_on_account
from .discover_folders import discover_folders
from .sync_feed import start_feed

_PENDING = (FolderSyncState.NEW, FolderSyncState.BOOTSTRAP)


def bootstrap_account(ctx, account_id, deadline):
    """Returns the run's report (``remaining`` = folders still bootstrapping), or None if busy."""
    return run_on_account(ctx, account_id, lambda run: _bootstrap(run, deadline))


def _bootstrap(run, deadline):
    run.limit_waits(deadline)
    if hasattr(run.mailbox, "account_changes"):
        start_feed(run)  # before listing anything: what changes meanwhile is in the feed
    discover_folders(run)
    folders = _pending(run)
    inbox = next((f for f in folders if f.is_inbox), None)
    if inbox is not None and inbox.sync_state == FolderSyncState.NEW:
        first = run.settings.first_chunk
        _bootstrap_folder(run, inbox, deadline, first_chunk=first, max_messages=first)
        if inbox.id not in run.report.folders_failed:
            return _count_remaining(run)  # shown at once; the rest is the next run's
        folders = [f for f in folders if f.id != inbox.id]
    for folder in folders:
        if run.ctx.clock.monotonic() >= deadline:
            break
        _bootstrap_folder(run, folder, deadline)
    _count_remaining(run)


def _pending(run):
    return [f for f in run.ctx.folders.list_for_account(run.account_id)
            if f.selectable and f.sync_state in _PENDING]


def _count_remaining(run):
    # A folder that failed waits for the next scheduled run, not an immediate one.
    run.report.remaining = sum(1 for f in _pending(run) if f.id not in run.report.folders_failed)


def _bootstrap_folder(run, folder, deadline, first_chunk=None, max_messages=None):
    with folder_errors(run, folder):
        _fill(run, folder, deadline, first_chunk, max_messages)


def _fill(run, folder, deadline, first_chunk, max_messages):
    opened = open_folder(run, folder)
    if opened is None:  # reset: the folder's ids changed under us
        opened = open_folder(run, folder)
    if opened is None:
        return  # reset twice in a row: the server keeps changing it; the next run tries again
    if folder.sync_state == FolderSyncState.NEW:
        pin_top(run, folder, opened)
    quota = max(run.settings.bootstrap_limit - folder.bootstrap_indexed, 0)
    if max_messages is not None:
        quota = min(quota, max_messages)
    walk_down(run, folder, quota, deadline, first_chunk=first_chunk)
    if folder.bootstrap_indexed >= run.settings.bootstrap_limit or folder.backfill_state == BackfillState.DONE:
        folder.sync_state = FolderSyncState.INCREMENTAL
        run.checkpoint(folder)
