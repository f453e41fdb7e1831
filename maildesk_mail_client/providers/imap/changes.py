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

_logger = logging.getLogger(__name__)

#: a reconciliation window that found nothing doubles, so sparse UID ranges cost fewer round trips;
#: capped, so a dense range after a sparse one brings back a bounded number of messages
_MAX_SCAN_FACTOR = 16


def folder_changes(session, folder, status, known, reconcile, settings):
    condstore = "CONDSTORE" in session.capabilities and status.highest_modseq is not None
    qresync = condstore and "QRESYNC" in session.capabilities
    trusted = condstore and bool(folder.highest_modseq) and status.highest_modseq >= folder.highest_modseq
    if condstore and folder.highest_modseq and not trusted:
        _logger.warning("Folder %s: HIGHESTMODSEQ went back from %s to %s; reconciling the whole folder.",
                        folder.path, folder.highest_modseq, status.highest_modseq)
    if not trusted:
        reconcile = True
    low, top = folder.low_uid, folder.last_uid
    indexed = bool(low) and top >= low

    if trusted and indexed:
        changes = session.fetch_changes_since(folder.highest_modseq, low, top)
        removed = frozenset(str(uid) for uid in changes.vanished) if qresync else frozenset()
        # Every change up to the server's HIGHESTMODSEQ below ``top`` is in this
        # delta; mail above ``top`` is fetched with its current flags anyway.
        yield Delta(flags=changes.updates, removed=removed, cursor={"highest_modseq": status.highest_modseq})
        if not qresync and not reconcile and _expunged(session, low, top, known):
            reconcile = True

    yield from _new_mail(session, folder, status, settings)

    if reconcile and indexed:
        yield from _reconcile(session, folder, low, top, known, settings)

    yield Delta(cursor={"highest_modseq": status.highest_modseq, "uidnext": status.uidnext,
                        "server_exists": status.exists})


def _new_mail(session, folder, status, settings):
    """UIDs above ``last_uid`` and below UIDNEXT, oldest first: a delta per FETCH chunk.

    Each UID SEARCH covers at most ``search_window`` UIDs, so no answer can
    outgrow a line; with ESEARCH a gap of expunged UIDs is jumped at once.
    """
    esearch = "ESEARCH" in session.capabilities
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
            yield Delta(upserts=tuple(session.fetch_metadata(chunk)), cursor={"last_uid": last})
        if not uids:
            yield Delta(cursor={"last_uid": high})
        start = high + 1


def _expunged(session, low, top, known):
    """Without VANISHED: did the indexed range lose a message? Counting is cheap; diffing is not."""
    if "ESEARCH" not in session.capabilities:
        return True
    return session.count_uids(low, top) != len(known(low, top))


def _reconcile(session, folder, low, top, known, settings):
    start = max(int(folder.reconcile_cursor or low), low)
    base = settings.flag_scan_chunk
    span = base
    while start <= top:
        end = min(start + span - 1, top)
        flags = session.fetch_flags(start, end)
        on_server = {update.uid for update in flags}
        indexed = known(start, end)
        missing = sorted(on_server - indexed)
        if missing:
            # UIDs only grow, so this should not happen; an index must heal, not drift.
            _logger.warning("Folder %s: %d message(s) were missing from the index; fetching them.",
                            folder.path, len(missing))
        upserts = []
        for first in range(0, len(missing), settings.chunk):
            upserts += session.fetch_metadata(missing[first:first + settings.chunk])
        done = end >= top
        yield Delta(upserts=tuple(upserts), flags=tuple(flags),
                    removed=frozenset(str(uid) for uid in indexed - on_server),
                    cursor={"reconcile_cursor": None if done else str(end + 1)}, reconciled=done)
        span = base if flags or indexed else min(span * 2, base * _MAX_SCAN_FACTOR)
        start = end + 1
