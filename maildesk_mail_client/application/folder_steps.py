"""The steps every use case takes on one folder, whatever the provider.

A provider hands the engine :class:`~.domain.Delta` values; this module
stores them (upserts isolated row by row when the database refuses one),
moves the folder's cursors and commits both together. It also owns the
walk down (bootstrap and backfill), the folder reset, the second chance
for messages the server refused once, and the rule that one folder's
trouble stays in that folder.
"""

import contextlib
import logging

from .domain import BackfillState, Delta, FolderSyncState, MessageMeta
from .errors import FolderNotFound, ServerError

_logger = logging.getLogger(__name__)


def open_folder(run, folder):
    """Open the folder; if its ids changed meaning, reset it and return None.

    A new UIDVALIDITY means every UID we hold may now name another message
    (RFC 3501 §2.3.1.1), so the folder's rows are dropped and it bootstraps
    again from the top.
    """
    opened = run.mailbox.open(folder)
    if opened.reset:
        reset_folder(run, folder, "its UIDVALIDITY changed")
        return None
    return opened


def reset_folder(run, folder, why):
    _logger.warning("Folder %s (%s): %s; re-indexing it.", folder.id, folder.path, why)
    removed = run.ctx.index.purge_folder(folder.id)
    folder.reset()
    run.report.removed += removed
    run.report.folders_reset.add(folder.id)
    run.ctx.scheduler.wake_bootstrap()  # before the commit, so it is committed with the reset
    run.checkpoint(folder)


def pin_top(run, folder, opened):
    """First visit: everything above the current top is incremental sync's job.

    The provider's pin says "all from here up is indexed", which is true:
    nothing up there exists yet. Incremental sync then checks exactly the
    rows it added itself, and leaves the history below to the walk down.
    """
    folder.advance(opened.pin)
    folder.sync_state = FolderSyncState.BOOTSTRAP
    folder.reconciled_at = run.ctx.clock.now()  # the index equals the server: nothing is indexed, nothing is above
    run.checkpoint(folder)


def apply(run, folder, delta: Delta, synced=False):
    """Store one delta, move the folder's cursors, commit: one unit, so a crash resumes after it.

    Two provider options reach beyond the folder: ``mailbox.flags_per_message``
    (Gmail: UNREAD and STARRED are the message's) applies the FlagUpdates to
    every row of the message, and a Delta with ``placements`` (a tuple of
    :class:`~.domain.Placement`, Gmail's walk and reconciliation) files its
    messages in every folder they are in, as the account feed does.
    """
    index = run.ctx.index
    changed = store_messages(run, folder, delta.upserts) if delta.upserts else []
    if delta.flags and getattr(run.mailbox, "flags_per_message", False):
        changed += _flags_everywhere(run, folder, delta.flags)
    elif delta.flags:
        changed += index.update_flags(folder.id, delta.flags)
    run.record_upserts(folder, changed)
    placements = delta.placements
    if placements:
        folders = {f.remote_id: f for f in run.ctx.folders.list_for_account(run.account_id)}
        place(run, folders, placements, stored=(folder.id, {m.remote_id for m in delta.upserts}))
    if delta.removed:
        removed = index.mark_deleted(folder.id, delta.removed)
        run.report.removed += removed
        if removed:
            run.report.folders_changed.add(folder.id)
    folder.advance(delta.cursor)
    if delta.reconciled:
        folder.reconciled_at = run.ctx.clock.now()
    run.checkpoint(folder, synced=synced)
    return changed


def _flags_everywhere(run, folder, updates):
    """The rows of this folder that changed; those of other folders are announced here."""
    elsewhere, here = {}, []
    for folder_id, row in run.ctx.index.update_flags_everywhere(run.account_id, updates):
        (here if folder_id == folder.id else elsewhere.setdefault(folder_id, [])).append(row)
    for folder_id, rows in elsewhere.items():
        other = run.ctx.folders.get(folder_id)
        if other is not None:
            run.record_upserts(other, rows)
    return here


def place(run, folders, placements, removed=(), stored=(None, ())):
    """Each message in exactly the folders its Placement names (``folders``: by remote id), and in
    no other of the account; ``removed``: ids gone from the account. ``stored``: (folder id, ids)
    this step upserted there already."""
    ctx, account_id = run.ctx, run.account_id
    touched = {p.message.remote_id for p in placements} | set(removed)
    where = ctx.index.folders_of(account_id, touched) if touched else {}
    by_id = {folder.id: folder for folder in folders.values()}
    upserts, gone = {}, {}
    for placement in placements:
        message = placement.message
        target = {folders[key].id for key in placement.folders if key in folders}
        for folder_id in target:
            if not (folder_id == stored[0] and message.remote_id in stored[1]):
                upserts.setdefault(folder_id, []).append(message)
        for folder_id in where.get(message.remote_id, set()) - target:
            gone.setdefault(folder_id, set()).add(message.remote_id)
    for remote_id in removed:
        for folder_id in where.get(remote_id, ()):
            gone.setdefault(folder_id, set()).add(remote_id)
    for folder_id, messages in upserts.items():
        run.record_upserts(by_id[folder_id], store_messages(run, by_id[folder_id], messages))
    for folder_id, remote_ids in gone.items():
        count = ctx.index.mark_deleted(folder_id, remote_ids)
        run.report.removed += count
        if count:
            run.report.folders_changed.add(folder_id)


def store_messages(run, folder, messages):
    """Upsert ``messages``; a row the database refuses costs that row its details, not the chunk.

    Each attempt runs in a savepoint. A chunk that fails is split in two
    until the refused message is alone; it is then stored with what cannot
    be refused (its id, flags, size, dates) and the database's reason, so
    the index still holds every message the server has.
    """
    messages = list(messages)
    unparseable = [m.remote_id for m in messages if m.parse_error]
    if unparseable:
        # Indexed anyway (the id set must stay exact), flagged for the admin.
        _logger.warning("Folder %s: %d message(s) could not be fully read: %s",
                        folder.id, len(unparseable), unparseable[:20])
    return _store(run, folder, messages)


def _store(run, folder, messages):
    ctx = run.ctx
    try:
        with ctx.checkpoint.savepoint():
            return ctx.index.upsert(run.account_id, folder.id, run.mailbox.provider, messages,
                                    moves=getattr(run.mailbox, "moves_keep_ids", False))
    except ctx.row_errors as error:
        if len(messages) > 1:
            middle = len(messages) // 2
            return _store(run, folder, messages[:middle]) + _store(run, folder, messages[middle:])
        return _store_refused(run, folder, messages[0], error)


def _store_refused(run, folder, message, error):
    reason = f"the database refused this message's details ({type(error).__name__}: {error})"[:300]
    _logger.warning("Folder %s: message %s: %s", folder.id, message.remote_id, reason)
    bare = MessageMeta(uid=message.uid, remote_id=message.remote_id, flags=message.flags, modseq=message.modseq,
                       internal_date=message.internal_date, size=message.size, parse_error=reason)
    try:
        with run.ctx.checkpoint.savepoint():
            return run.ctx.index.upsert(run.account_id, folder.id, run.mailbox.provider, [bare],
                                        moves=getattr(run.mailbox, "moves_keep_ids", False))
    except run.ctx.row_errors as again:
        # Not even its id can be stored: say so on the folder; the next
        # reconciliation meets the message again and tries again.
        run.warn(folder, f"Message {message.remote_id!r} could not be indexed: {again}"[:500])
        return []


def walk_down(run, folder, max_messages, deadline, first_chunk=None):
    """Index history newest first, below the folder's walk cursor, in capped chunks.

    Each chunk is one provider call and one checkpoint, so a killed worker
    loses at most one chunk and the next run resumes below the last saved
    cursor. Returns how many messages were indexed.
    """
    done = 0
    size = first_chunk or run.settings.chunk
    while (folder.backfill_state != BackfillState.DONE and done < max_messages
           and run.ctx.clock.monotonic() < deadline):
        page = min(size, max_messages - done)
        # The page after this one, if this walk will ask for it: the provider may fetch it meanwhile.
        then = min(run.settings.chunk, max_messages - done - page)
        delta = run.mailbox.older(folder, page, then=then if then > 0 else None)
        if folder.sync_state == FolderSyncState.BOOTSTRAP:
            folder.bootstrap_indexed += len(delta.upserts)
        apply(run, folder, delta)
        done += len(delta.upserts)
        size = run.settings.chunk
    return done


def refetch_incomplete(run, folder, deadline):
    """Ask again for messages the server refused to describe, a chunk per pass.

    A refusal (Gmail's and Yahoo's ``NO`` for one broken message, a server
    under load) may be temporary; an answer that could not be parsed is
    not, so those rows keep their error without being asked again.
    """
    ctx = run.ctx
    pending = ctx.index.incomplete(folder.id, run.settings.chunk)
    if not pending or ctx.clock.monotonic() >= deadline:
        return
    answered = run.mailbox.fetch(folder, pending)
    # Only a complete answer heals; any other answer (refused again, or now
    # unparseable) is one more attempt, so the cap always ends the asking.
    healed = [m for m in answered if not m.parse_error]
    refused = set(pending) - {m.remote_id for m in healed}
    if healed:
        run.record_upserts(folder, store_messages(run, folder, healed))
    if refused:
        ctx.index.refetch_failed(folder.id, sorted(refused), run.settings.refetch_attempts)
    run.checkpoint(folder)


@contextlib.contextmanager
def folder_errors(run, folder):
    """Keep one folder's trouble in that folder.

    A folder that vanished is dealt with by the next discovery. A server
    error (a folder it will not open, a message it will not FETCH) is
    recorded on the folder for the admin, and the account's other folders
    carry on. Connection and login errors still end the run: they are the
    account's.
    """
    try:
        yield
    except FolderNotFound:
        _logger.info("Folder %s vanished during sync; the next discovery checks it.", folder.path)
        run.rollback()
    except ServerError as error:
        _logger.warning("Folder %s (%s): %s", folder.id, folder.path, error)
        run.rollback()
        run.ctx.folders.record_error(folder.id, str(error))
        run.report.folders_failed.add(folder.id)
        run.checkpoint()
