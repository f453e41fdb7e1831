"""Flow 2 for one IMAP folder: bring the index level with the server.

| server offers | new mail, flags                      | expunges           |
|---------------|--------------------------------------|--------------------|
| QRESYNC       | new UIDs + CHANGEDSINCE              | VANISHED           |
| CONDSTORE     | new UIDs + CHANGEDSINCE              | UID-set diff       |
| neither       | new UIDs + chunked FLAGS scan        | UID-set diff       |

A folder whose HIGHESTMODSEQ, UIDNEXT and EXISTS are all unchanged costs one
EXAMINE. A HIGHESTMODSEQ lower than the one we stored means the server lost
its mod-sequences (a restored backup, a rebuilt index); CHANGEDSINCE would
then miss changes, so, as closeio's sync-engine does, we stop trusting it for
this pass: full flag scan and UID diff, then store the server's new value.
"""

import logging

from ..domain import FolderSyncState
from .folder_steps import index_uids, open_folder

_logger = logging.getLogger(__name__)


def sync_folder(run, folder):
    if folder.sync_state == FolderSyncState.NEW:
        return  # the bootstrap job's
    status = open_folder(run, folder)
    if status is None:
        return  # reset: the bootstrap job starts it over
    if _unchanged(folder, status):
        # Stamped all the same, so the least recently visited folders go first next run.
        run.ctx.folders.touch(folder.id)
        return

    condstore = "CONDSTORE" in run.session.capabilities and status.highest_modseq is not None
    qresync = condstore and "QRESYNC" in run.session.capabilities
    modseq_trusted = condstore and bool(folder.highest_modseq) and status.highest_modseq >= folder.highest_modseq
    if condstore and folder.highest_modseq and not modseq_trusted:
        _logger.warning("Folder %s: HIGHESTMODSEQ went back from %s to %s; rescanning flags.",
                        folder.path, folder.highest_modseq, status.highest_modseq)

    known_top = folder.last_uid
    _fetch_new(run, folder, status)

    # Only ``low_uid..known_top`` is indexed: the history below is the walk
    # down's, and must not be fetched here in one unbounded pass.
    low = folder.low_uid
    if low and known_top >= low:
        if modseq_trusted:
            changes = run.session.fetch_changes_since(folder.highest_modseq, low, known_top)
            run.record_upserts(folder, run.ctx.index.update_flags(folder.id, changes.updates))
            if qresync:
                _remove(run, folder, changes.vanished)
            else:
                _diff_uids(run, folder, low, known_top)
        else:
            _scan_flags(run, folder, low, known_top)
            _diff_uids(run, folder, low, known_top)

    folder.highest_modseq = status.highest_modseq
    folder.uidnext = status.uidnext
    folder.server_exists = status.exists
    run.checkpoint(folder)


def _unchanged(folder, status):
    return (
        status.highest_modseq is not None
        and status.highest_modseq == folder.highest_modseq
        and status.uidnext == folder.uidnext
        and status.exists == folder.server_exists
    )


def _fetch_new(run, folder, status):
    """Index UIDs above ``last_uid``, oldest first, checkpointing every chunk."""
    if status.uidnext is not None and status.uidnext <= folder.last_uid + 1:
        return
    new_uids = run.session.search_uids(folder.last_uid + 1)
    size = run.settings.chunk
    for start in range(0, len(new_uids), size):
        chunk = new_uids[start:start + size]
        index_uids(run, folder, chunk)
        folder.last_uid = chunk[-1]
        run.checkpoint(folder)
    # No UID below UIDNEXT can appear later, even if those were expunged already.
    folder.last_uid = max(folder.last_uid, (status.uidnext or 1) - 1)


def _scan_flags(run, folder, low, high):
    size = run.settings.flag_scan_chunk
    for start in range(low, high + 1, size):
        updates = run.session.fetch_flags(start, min(start + size - 1, high))
        run.record_upserts(folder, run.ctx.index.update_flags(folder.id, updates))
        run.keep_lease()  # a big folder without CONDSTORE can take a while


def _diff_uids(run, folder, low, high):
    """Make the indexed UID range equal the server's: drop expunged, add missing."""
    on_server = set(run.session.search_uids(low, high))
    indexed = run.ctx.index.live_uids(folder.id, low, high)
    _remove(run, folder, indexed - on_server)
    missing = sorted(on_server - indexed)
    if missing:
        # Should not happen (UIDs only grow), but an index must heal, not drift.
        _logger.warning("Folder %s: %d indexed UID(s) were missing; fetching them.", folder.path, len(missing))
        for start in range(0, len(missing), run.settings.chunk):
            index_uids(run, folder, missing[start:start + run.settings.chunk])
            run.keep_lease()


def _remove(run, folder, uids):
    if not uids:
        return
    removed = run.ctx.index.mark_deleted(folder.id, uids)
    run.report.removed += removed
    if removed:
        run.report.folders_changed.add(folder.id)
