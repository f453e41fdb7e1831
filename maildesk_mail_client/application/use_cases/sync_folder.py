"""Flow 2 for one folder: bring the index level with the server.

The provider says what changed as a series of deltas (IMAP: new UIDs,
CHANGEDSINCE or a flag scan, VANISHED or a UID diff; see
``providers/imap/changes.py``); each is stored and committed with the
cursors it brings, and the deadline is checked between them, so a long
pass (a backlog of new mail, a flag scan of a million messages) stops on
time and the next run resumes where this one stopped.

Fast paths can miss what a server forgot (a Dovecot index rebuilt, its
mod-sequences climbing back past ours): a full reconciliation of flags
and ids runs every ``reconcile_interval``, itself budgeted and resumable.
"""

import datetime as dt
import logging

from ..domain import FolderSyncState
from ..errors import CursorExpired
from ..folder_steps import apply, open_folder, refetch_incomplete

_logger = logging.getLogger(__name__)


def sync_folder(run, folder, deadline):
    """One pass. Returns False when the deadline cut it short (the next run resumes)."""
    if folder.sync_state == FolderSyncState.NEW:
        return True  # the bootstrap job's
    opened = open_folder(run, folder)
    if opened is None:
        return True  # reset: the bootstrap job starts it over
    reconcile = reconcile_due(run, folder)
    if opened.unchanged and not reconcile:
        refetch_incomplete(run, folder, deadline)  # a quiet folder may still hold refused messages
        # Stamped all the same, so the least recently visited folders go first next run.
        run.ctx.folders.touch(folder.id)
        return True

    try:
        if not _apply_changes(run, folder, reconcile, deadline):
            return False
    except CursorExpired as error:
        # Graph's deltaLink expired (410): start the folder's feed over and
        # compare it with the server by id, which keeps every unchanged row as it is.
        restart_cursor(run, folder, str(error))
        if not _apply_changes(run, folder, True, deadline):
            return False
    refetch_incomplete(run, folder, deadline)
    run.checkpoint(folder, synced=True)
    return True


def _apply_changes(run, folder, reconcile, deadline):
    for delta in run.mailbox.changes(folder, _KnownRows(run.ctx.index, folder.id), reconcile, run.settings):
        moved = any(getattr(folder, name) != value for name, value in delta.cursor.items())
        apply(run, folder, delta)
        # Only a delta that moved a cursor is progress the next pass keeps: stopping
        # after one that did not could leave every pass redoing the same first step.
        if moved and run.ctx.clock.monotonic() >= deadline:
            return False
    return True


def restart_cursor(run, folder, why):
    """Forget the folder's change cursor and make a reconciliation by id due; committed at once."""
    _logger.warning("Folder %s (%s): %s; reconciling it by id.", folder.id, folder.path, why)
    folder.sync_cursor = folder.reconcile_cursor = None
    folder.reconciled_at = None
    run.checkpoint(folder)


class _KnownRows:
    """What the index holds of one folder, for the provider's diffs (the ``KnownRows`` port)."""

    def __init__(self, index, folder_id):
        self._index, self._folder_id = index, folder_id

    def uids(self, low, high):
        return self._index.live_uids(self._folder_id, low, high)

    def count(self, low, high):
        return self._index.count_live(self._folder_id, low, high)

    def present(self, remote_ids):
        return self._index.live_among(self._folder_id, remote_ids)

    def dates(self, remote_ids):
        return self._index.live_dates(self._folder_id, remote_ids)

    def remember_listed(self, remote_ids):
        self._index.remember_listed(self._folder_id, remote_ids)

    def forget_listed(self, remote_ids=None):
        self._index.forget_listed(self._folder_id, remote_ids)

    def unlisted(self):
        return self._index.unlisted(self._folder_id)


def reconcile_due(run, folder):
    if folder.reconcile_cursor is not None:
        return True  # one is under way: carry on with it
    if folder.reconciled_at is None:
        return True  # indexed before reconciliations existed
    return run.ctx.clock.now() - folder.reconciled_at >= dt.timedelta(seconds=run.settings.reconcile_interval)
