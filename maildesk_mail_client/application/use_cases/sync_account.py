"""Flow 2 for one account: reconcile folders, then sync each, INBOX first.

Folders still in bootstrap are synced too (their top is pinned), so mail
that arrives while history is loading shows up at once. Folders that are
NEW belong to the bootstrap job. After INBOX, folders go least recently
synced first, so what a deadline cuts off one run goes first the next.
"""

import datetime as dt

from ..folder_steps import folder_errors
from .account_run import run_on_account
from .discover_folders import discover_folders
from .sync_feed import sync_feed
from .sync_folder import sync_folder

_NEVER = dt.datetime.min


def sync_account(ctx, account_id, deadline, max_folders=None):
    """Returns the run's report, or None if another worker holds the account."""
    return run_on_account(ctx, account_id, lambda run: _sync(run, deadline, max_folders))


def _sync(run, deadline, max_folders):
    run.limit_waits(deadline)
    if hasattr(run.mailbox, "account_changes"):
        sync_feed(run, deadline)  # Gmail: one feed for the whole account
        return
    discover_folders(run)
    folders = sorted(
        (f for f in run.ctx.folders.list_for_account(run.account_id) if f.selectable),
        key=lambda f: (not f.is_inbox, f.last_sync_at or _NEVER),
    )
    if max_folders is not None:
        run.report.remaining += max(len(folders) - max_folders, 0)
        folders = folders[:max_folders]
    for position, folder in enumerate(folders):
        # INBOX is first in the list and always gets its pass.
        if position and run.ctx.clock.monotonic() >= deadline:
            run.report.remaining += len(folders) - position
            break
        with folder_errors(run, folder):
            if not sync_folder(run, folder, deadline):
                run.report.remaining += 1  # cut by the deadline; resumes from its cursors
