"""Flow 2 for one IMAP account: reconcile folders, then sync each, INBOX first.

Folders still in bootstrap are synced too (their top is pinned), so mail
that arrives while history is loading shows up at once. Folders that are
NEW belong to the bootstrap job. Whatever the deadline cuts off is reported
as ``remaining`` and picked up first on the next run.
"""

import logging

from ..errors import FolderNotFound
from .account_run import run_on_account
from .discover_folders import discover_folders
from .sync_folder import sync_folder

_logger = logging.getLogger(__name__)


def sync_account(ctx, account_id, deadline, max_folders=None):
    """Returns the run's report, or None if another worker holds the account."""
    return run_on_account(ctx, account_id, lambda run: _sync(run, deadline, max_folders))


def _sync(run, deadline, max_folders):
    discover_folders(run)
    folders = [f for f in run.ctx.folders.list_for_account(run.account_id) if f.selectable]
    if max_folders is not None:
        run.report.remaining += max(len(folders) - max_folders, 0)
        folders = folders[:max_folders]
    for position, folder in enumerate(folders):
        # INBOX is first in the list and always gets its pass.
        if position and run.ctx.clock.monotonic() >= deadline:
            run.report.remaining += len(folders) - position
            break
        try:
            sync_folder(run, folder)
        except FolderNotFound:
            _logger.info("Folder %s vanished during sync; the next discovery drops it.", folder.path)
