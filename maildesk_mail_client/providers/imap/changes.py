"""What changed in one IMAP folder, as deltas the engine commits one by one.

| server offers | new mail          | flags                 | expunges                          |
|---------------|-------------------|-----------------------|-----------------------------------|
| QRESYNC       | UID windows above | CHANGEDSINCE          | VANISHED                          |
| CONDSTORE     | UID windows above | CHANGEDSINCE          | count check, windowed diff if off |
| neither       | UID windows above | windowed flag scan    | windowed diff                     |

The windowed scan is also the periodic full reconciliation: a FETCH FLAGS
over a window of UIDs says which messages exist and their flags, and the
index's rows of that window are made equal to it (flags set, rows the
server lost marked deleted, messages the index lacks fetched). Its cursor
is the next UID to scan, so a scan of a million messages runs over as
many cron calls as it needs and never starts over.

A HIGHESTMODSEQ lower than the one we stored means the server lost its
mod-sequences (a restored backup, a rebuilt index): CHANGEDSINCE would
miss changes, so, as closeio's sync-engine does, we stop trusting it and
reconcile the whole folder, then take the server's new value.
"""

import logging

from ...application.domain import Delta
from .session import AnswerTooLong

_logger = logging.getLogger(__name__)

#: a reconciliation window that found nothing doubles, so sparse UID ranges cost fewer round trips;
#: capped, so a dense range after a sparse one brings back a bounded number of messages
_MAX_SCAN_FACTOR = 16


def folder_changes(mailbox, folder, status, known, reconcile, settings):
    """``mailbox`` is the ImapMailbox: its session, and its FETCH that survives over-long answers."""
    capabilities = mailbox.capabilities
    condstore = "CONDSTORE" in capabilities and status.highest_modseq is not None
    qresync = condstore and "QRESYNC" in capabilities
    trusted = condstore and bool(folder.highest_modseq) and status.highest_modseq >= folder.highest_modseq
    low, top = folder.low_uid, folder.last_uid
    indexed = bool(low) and top >= low

    if condstore and folder.highest_modseq and not trusted:
        _logger.warning("Folder %s: HIGHESTMODSEQ went back from %s to %s; reconciling the whole folder.",
                        folder.path, folder.highest_modseq, status.highest_modseq)
    if condstore and not trusted:
        # Take the server's new value at once, with a reconciliation started: from
        # here on CHANGEDSINCE covers what changes after it, while the windows
        # cover what it lost. Taking it only when the reconciliation ends would
        # miss what changed, meanwhile, in the windows already scanned.
        yield Delta(cursor={"highest_modseq": status.highest_modseq,
                            "reconcile_cursor": folder.reconcile_cursor or str(max(low, 1)),
                            "sync_cursor": None})
        reconcile = indexed
    elif not condstore:
        reconcile = True  # flags can only be seen by reading them all

    if trusted and indexed:
        yield from _changed_since(mailbox, folder, status, known, qresync, settings)
        if not qresync and not reconcile and _expunged(mailbox, folder, status, low, top, known):
            reconcile = True

    yield from _new_mail(mailbox, folder, status, settings)

    if reconcile and indexed:
        yield from _reconcile(mailbox, folder, low, top, known, settings)

    final = {"uidnext": status.uidnext, "server_exists": status.exists}
    if trusted and not indexed:
        final["highest_modseq"] = status.highest_modseq  # nothing indexed could have changed
    yield Delta(cursor=final)


def _changed_since(mailbox, folder, status, known, qresync, settings):
    """Flag changes (and with QRESYNC, expunges) since our HIGHESTMODSEQ, in bounded steps.

    A few changes come in one FETCH. Many ("mark all as read" on a big
    folder) come in UID windows, a delta each, so no answer, transaction or
    hook batch grows with the folder. A run of windows resumes across passes:
    ``sync_cursor`` is ``"<target modseq>:<next uid>"``, and HIGHESTMODSEQ
    moves to the target only after the last window (changes after the
    target are the next pass's).
    """
    session = mailbox.session
    base, low, top = folder.highest_modseq, folder.low_uid, folder.last_uid
    target, start = status.highest_modseq, low
    if folder.sync_cursor:
        target, start = (int(part) for part in folder.sync_cursor.split(":"))
    elif target == base:
        return  # nothing changed in flags or membership of the indexed range
    else:
        changed = session.count_changed(base, low, top) if "ESEARCH" in mailbox.capabilities else None
        if changed is not None and changed <= settings.flag_scan_chunk:
            # Few enough for one answer. VANISHED comes as a compact UID set, so even a
            # large expunge of a range is a short line; scattered enough, it is not,
            # and then the windows below bound it too.
            try:
                changes = session.fetch_changes_since(base, low, top)
            except AnswerTooLong:
                mailbox.reselect()
                session = mailbox.session
            else:
                removed = frozenset(str(uid) for uid in changes.vanished) if qresync else frozenset()
                yield Delta(flags=changes.updates, removed=removed, cursor={"highest_modseq": target})
                return
    window = settings.flag_scan_chunk
    while start <= top:
        end = min(start + window - 1, top)
        changes = session.fetch_changes_since(base, start, end)
        removed = frozenset(str(uid) for uid in changes.vanished) if qresync else frozenset()
        done = end >= top
        cursor = {"highest_modseq": target, "sync_cursor": None} if done else {"sync_cursor": f"{target}:{end + 1}"}
        yield Delta(flags=changes.updates, removed=removed, cursor=cursor)
        start = end + 1


def _new_mail(mailbox, folder, status, settings):
    """UIDs above ``last_uid`` and below UIDNEXT, oldest first: a delta per FETCH chunk.

    Each UID SEARCH covers at most ``search_window`` UIDs, so no answer can
    outgrow a line; with ESEARCH a gap of expunged UIDs is jumped at once.
    """
    session = mailbox.session
    esearch = "ESEARCH" in mailbox.capabilities
    end = status.uidnext - 1
    start = folder.last_uid + 1
    while start <= end:
        if esearch:
            first = session.first_uid(start, end)
            if first is None:
                yield Delta(cursor={"last_uid": end})
                return
            start = first
        high = min(start + settings.search_window - 1, end)
        uids = session.search_uids(start, high)
        for first in range(0, len(uids), settings.chunk):
            chunk = uids[first:first + settings.chunk]
            last = chunk[-1] if first + settings.chunk < len(uids) else high
            yield Delta(upserts=tuple(mailbox.fetch_metadata(chunk)), cursor={"last_uid": last})
        if not uids:
            yield Delta(cursor={"last_uid": high})
        start = high + 1


def _expunged(mailbox, folder, status, low, top, known):
    """Without VANISHED: did the folder lose a message since the last pass?

    EXISTS moves only by appends and expunges, so it is enough to count what
    arrived: no expunge when EXISTS grew by exactly the messages above the
    last UIDNEXT. That costs one ESEARCH COUNT of the new UIDs, whatever the
    folder's size; counting the whole indexed range is the fallback.
    """
    if "ESEARCH" not in mailbox.capabilities:
        return True
    session = mailbox.session
    if folder.server_exists is not None and folder.uidnext:
        arrived = session.count_uids(folder.uidnext, status.uidnext - 1)
        return status.exists != folder.server_exists + arrived
    return session.count_uids(low, top) != known.count(low, top)


def _reconcile(mailbox, folder, low, top, known, settings):
    session = mailbox.session
    start = max(int(folder.reconcile_cursor or low), low)
    base = settings.flag_scan_chunk
    span = base
    while start <= top:
        end = min(start + span - 1, top)
        flags = session.fetch_flags(start, end)
        on_server = {update.uid for update in flags}
        indexed = known.uids(start, end)
        missing = sorted(on_server - indexed)
        if missing:
            # UIDs only grow, so this should not happen; an index must heal, not drift.
            _logger.warning("Folder %s: %d message(s) were missing from the index; fetching them.",
                            folder.path, len(missing))
        upserts = []
        for first in range(0, len(missing), settings.chunk):
            upserts += mailbox.fetch_metadata(missing[first:first + settings.chunk])
        done = end >= top
        yield Delta(upserts=tuple(upserts), flags=tuple(flags),
                    removed=frozenset(str(uid) for uid in indexed - on_server),
                    cursor={"reconcile_cursor": None if done else str(end + 1)}, reconciled=done)
        span = base if flags or indexed else min(span * 2, base * _MAX_SCAN_FACTOR)
        start = end + 1
