"""Steps shared by bootstrap, incremental sync and backfill on one folder."""

import contextlib
import logging

from ..domain import BackfillState, FolderSyncState
from ..errors import FolderNotFound, ServerError

_logger = logging.getLogger(__name__)

PROVIDER = "imap"


def open_folder(run, folder):
    """SELECT the folder; if its UIDVALIDITY changed, reset it and return None.

    A new UIDVALIDITY means every UID we hold may now name another message
    (RFC 3501 §2.3.1.1), so the folder's rows are dropped and it bootstraps
    again from the top.
    """
    status = run.session.select(folder.path)
    if folder.uidvalidity and status.uidvalidity != folder.uidvalidity:
        reset_folder(run, folder)
        return None
    return status


def reset_folder(run, folder):
    _logger.warning("Folder %s (%s): UIDVALIDITY changed, re-indexing it.", folder.id, folder.path)
    removed = run.ctx.index.purge_folder(folder.id)
    folder.uidvalidity = folder.uidnext = folder.highest_modseq = folder.server_exists = None
    folder.last_uid = folder.low_uid = folder.bootstrap_indexed = 0
    folder.sync_state = FolderSyncState.NEW
    folder.backfill_state = BackfillState.PENDING
    run.report.removed += removed
    run.report.folders_reset.add(folder.id)
    run.ctx.scheduler.wake_bootstrap()  # before the commit, so it is committed with the reset
    run.checkpoint(folder)


def pin_top(folder, status):
    """First visit: everything above the current top is incremental sync's job.

    ``low_uid = UIDNEXT`` says "all from here up is indexed", which is true:
    nothing up there exists yet. Incremental sync then checks exactly the
    rows it added itself, and leaves the history below to the walk down.
    """
    folder.uidvalidity = status.uidvalidity
    folder.uidnext = status.uidnext
    folder.highest_modseq = status.highest_modseq
    folder.server_exists = status.exists
    folder.last_uid = max(status.uidnext - 1, 0)
    folder.low_uid = max(status.uidnext, 1)
    folder.sync_state = FolderSyncState.BOOTSTRAP


@contextlib.contextmanager
def folder_errors(run, folder):
    """Keep one folder's trouble in that folder.

    A folder that vanished is dropped by the next discovery. A server error
    (a folder it will not open, a message it will not FETCH) is recorded on
    the folder for the admin, and the account's other folders carry on.
    Connection and login errors still end the run: they are the account's.
    """
    try:
        yield
    except FolderNotFound:
        _logger.info("Folder %s vanished during sync; the next discovery drops it.", folder.path)
        run.rollback()
    except ServerError as error:
        _logger.warning("Folder %s (%s): %s", folder.id, folder.path, error)
        run.rollback()
        run.ctx.folders.record_error(folder.id, str(error))
        run.report.folders_failed.add(folder.id)
        run.checkpoint()


def index_uids(run, folder, uids):
    """Fetch the metadata of ``uids`` in one round trip and upsert it."""
    messages = run.session.fetch_metadata(uids)
    unparseable = [m.uid for m in messages if m.parse_error]
    if unparseable:
        # Indexed anyway (the UID set must stay exact), flagged for the admin.
        _logger.warning("Folder %s: %d message(s) could not be fully parsed: UIDs %s",
                        folder.id, len(unparseable), unparseable[:20])
    results = run.ctx.index.upsert(run.account_id, folder.id, PROVIDER, messages)
    run.record_upserts(folder, results)
    return messages


def walk_down(run, folder, max_messages, deadline, first_chunk=None):
    """Index history newest first, below ``folder.low_uid``, in capped chunks.

    One UID SEARCH per call gives the UIDs still to fetch; each chunk is one
    FETCH and one checkpoint, so a killed worker loses at most one chunk and
    the next one resumes below the last saved ``low_uid``.
    Returns how many messages were indexed.
    """
    below = folder.walk_below
    pending = run.session.search_uids(1, below - 1) if below > 1 else []
    done = 0
    chunk_size = first_chunk or run.settings.chunk
    while pending and done < max_messages and run.ctx.clock.monotonic() < deadline:
        size = min(chunk_size, max_messages - done)
        chunk = pending[-size:]
        del pending[-size:]
        index_uids(run, folder, chunk)
        done += len(chunk)
        folder.low_uid = chunk[0]
        if folder.sync_state == FolderSyncState.BOOTSTRAP:
            folder.bootstrap_indexed += len(chunk)
        if not pending:
            folder.backfill_state = BackfillState.DONE
        run.checkpoint(folder)
        chunk_size = run.settings.chunk
    if not pending and folder.backfill_state != BackfillState.DONE:
        folder.backfill_state = BackfillState.DONE
        run.checkpoint(folder)
    return done
