"""Fill index rows that a provider's change feed left thin.

Graph's delta may describe a message by little more than its id and flags;
such rows are stored at once (the message is in the folder, and counts) and
marked for a second look. This pass asks for their details in batches, a
chunk per folder, under the cron's budget; the provider's ``fetch`` decides
how (Graph: ``$batch``). Rows the server keeps refusing stop being asked
for after ``refetch_attempts``, as for IMAP.
"""

from ..folder_steps import folder_errors, refetch_incomplete
from .account_run import run_on_account


def repair_sparse(ctx, account_id, deadline):
    """Returns the run's report (``remaining``: folders the deadline cut), or None if busy."""
    return run_on_account(ctx, account_id, lambda run: _repair(run, deadline))


def _repair(run, deadline):
    run.limit_waits(deadline)
    folders = [f for f in run.ctx.folders.list_for_account(run.account_id) if f.selectable]
    for position, folder in enumerate(folders):
        if run.ctx.clock.monotonic() >= deadline:
            run.report.remaining += len(folders) - position
            return
        with folder_errors(run, folder):
            refetch_incomplete(run, folder, deadline)
