"""Flow 1, last step: progressive backfill of older history.

Lower priority than incremental sync: it runs from its own cron, claims
one folder at a time with FOR UPDATE SKIP LOCKED so workers on several
hosts share the folders, and skips any account whose sync lease is held.
It stops at ``deadline`` and reports what is left, so the cron re-queues
itself while history remains.
"""

from ..domain import BackfillState, FolderSyncState
from ..folder_steps import folder_errors, open_folder, walk_down
from .account_run import run_on_account


def backfill(ctx, deadline, max_messages_per_folder=None):
    """Returns (folders visited, messages indexed, folders still pending)."""
    visited = indexed = 0
    busy_accounts = set()
    while ctx.clock.monotonic() < deadline:
        folder = _claim(ctx, busy_accounts)
        if folder is None:
            break
        outcome = []
        report = run_on_account(
            ctx, folder.account_id,
            lambda run, f=folder, out=outcome: out.append(
                _backfill_folder(run, f, deadline, max_messages_per_folder)),
        )
        if report is None or not outcome or outcome[0] is None:
            # Busy with incremental sync, failed (the account now backs off),
            # or the folder could not be opened: leave the account for this run.
            busy_accounts.add(folder.account_id)
            ctx.checkpoint.commit()  # let go of the row lock
            continue
        visited += 1
        indexed += outcome[0]
    ctx.checkpoint.commit()
    return visited, indexed, ctx.folders.count_backfill_pending(ctx.providers)


def _claim(ctx, busy_accounts):
    """The next folder to backfill, or None. Claimed in a fresh transaction.

    Under REPEATABLE READ, locking a row that another worker changed after
    our snapshot raises a serialization failure; a fresh snapshot makes
    that rare, and when it still happens the folder is simply not ours.
    """
    for _attempt in range(3):
        ctx.checkpoint.commit()
        try:
            claimed = ctx.folders.claim_backfill(limit=1, exclude_accounts=sorted(busy_accounts),
                                                 providers=ctx.providers)
        except ctx.conflicts:
            ctx.checkpoint.rollback()
            continue
        return claimed[0] if claimed else None
    return None


def _backfill_folder(run, claimed, deadline, max_messages):
    # Re-read under the lease: the claim may predate another worker's progress.
    folder = run.ctx.folders.get(claimed.id)
    if (folder is None or folder.backfill_state == BackfillState.DONE
            or folder.sync_state != FolderSyncState.INCREMENTAL):
        return 0
    indexed = None  # stays None if the folder fails: its account is left alone this run
    run.limit_waits(deadline)
    with folder_errors(run, folder):
        if open_folder(run, folder) is not None:  # None: reset, bootstrap starts it over
            indexed = walk_down(run, folder, max_messages or float("inf"), deadline)
    return indexed
