"""One folder compared with Gmail by message id, a page per committed step.

After the history expired (or once a day, ``reconcile_interval``) a label
is listed again, newest first, in pages of ``settings.chunk`` ids. Each
page is one step, committed with the next page's token in
``reconcile_cursor``, so the cursor moves every step: the engine stops at
the run's deadline after any step and the next run resumes at the next
page. Nothing is held in memory across steps; the ids listed so far are
kept in the database with each step (``known.remember_listed``, the
``maildesk.folder.seen`` table), so a listing that spans many runs still
knows what it listed.

A step, for one page of ids:

- ids the folder lacks are read (batched ``messages.get``) and upserted,
  and placed in their other folders (All Mail);
- the flags of the ids it holds come from three more listings that run
  alongside, each with its own page token in the cursor: the label AND-ed
  with UNREAD, with STARRED and with DRAFT. They list the same mail in the
  same order (newest first), so a page's unread ids are the UNREAD
  listing's ids up to the first one below the page; what was read past it
  waits in the cursor (``ahead``) for the next page. An id that is not in
  the page is placed by its date (the index's, or one ``messages.get``):
  above the page's oldest it is a message that joined the label after the
  page was listed (the feed places it), below it is the next page's. Each
  FlagUpdate goes to every row of the message (``flags_per_message``), so
  one message never reads unread in one folder and read in another. The
  engine stores only flags that differ: no hook fires for unchanged rows.

A label still being walked down (``backfill_state`` pending) is listed
only down to the walk's position (``position.py``): below it is the
walk's to read, once; reading it here would read it twice.

At the end, the sweep: the folder's live rows the listing never named
(within the listed range) are read again, a step of ``chunk`` ids each;
those Gmail no longer has in the label are removed, the others (placed by
the feed after the listing passed them) are kept. Nothing is purged and
indexed again.
"""

from __future__ import annotations

import json
import logging

from ...application.domain import BackfillState, Delta, Flags, FlagUpdate, Placement
from .client import InvalidArgument
from .position import decode

_logger = logging.getLogger(__name__)

MAX_STEP = 500  # messages.list's maximum page
_PREFIX = "v2:"  # a reconcile_cursor of this format; anything else starts the listing over
FLAG_LABELS = ("UNREAD", "STARRED", "DRAFT")


def reconcile_folder(mailbox, folder, known, settings):
    step = max(1, min(settings.chunk, MAX_STEP))
    state = _resumed(folder.reconcile_cursor)
    if state is None:
        known.forget_listed()  # what an abandoned listing remembered says nothing about this one
        state = _fresh()
    bound = _bound(folder)
    while True:
        if state["phase"] == "list":
            delta = _list_step(mailbox, folder, known, state, step, bound)
        else:
            delta = _sweep_step(mailbox, folder, known, state, step, bound)
        yield delta
        if delta.reconciled:
            return


def _fresh():
    return {"phase": "list", "page": None, "step": 0, "flags": {}}


def _resumed(cursor):
    if not cursor or not cursor.startswith(_PREFIX):
        return None
    try:
        state = json.loads(cursor[len(_PREFIX):])
        return state if state.get("phase") in ("list", "sweep") else None
    except (ValueError, AttributeError):
        return None


def _cursor(state):
    state["step"] += 1  # every step's cursor differs, so the engine may stop after any of them
    return {"reconcile_cursor": _PREFIX + json.dumps(state, separators=(",", ":"))}


def _bound(folder):
    """(walk's last message id, its date) of a label still walked down; None: list it all."""
    if folder.backfill_state == BackfillState.DONE:
        return None
    position = decode(folder.backfill_cursor)
    if position.token is None or position.last_id is None:
        # No walk yet, or a cursor without its position (stored before positions were kept): the
        # first leaves nothing to compare, the second is compared whole, as before.
        return ("", None) if position.token is None and folder.backfill_cursor is None else None
    return position.last_id, position.last_date


# -- the listing ------------------------------------------------------------------


def _list_step(mailbox, folder, known, state, step, bound):
    label = folder.remote_id
    if bound == ("", None):  # the walk has not started: everything is its to read
        state["phase"] = "sweep"
        return Delta(cursor=_cursor(state))
    try:
        page = mailbox.list_page(label, step, state["page"])
    except InvalidArgument as error:
        if state["page"] is None:
            raise
        _logger.warning("Label %s: Gmail refused the reconciliation's page token (%s); listing it again.",
                        folder.path, error)
        known.forget_listed()
        state.clear()
        state.update(_fresh())
        page = mailbox.list_page(label, step, None)
    ids = [item["id"] for item in page.get("messages") or ()]
    next_token = page.get("nextPageToken")
    dates = known.dates(ids)
    ids, ended = _within(ids, dates, bound)
    missing = [message_id for message_id in ids if message_id not in dates]
    found = mailbox.metadata(missing, f"reading messages of {folder.path!r}") if missing else {}
    if bound is not None:
        cut, ended_too = _within(ids, {**dates, **_dates_of(found)}, bound)
        ids, ended = cut, ended or ended_too
    # Read after the listing: a message that left the label meanwhile is the feed's to place.
    taken = [found[message_id] for message_id in ids if found.get(message_id)]
    upserts = tuple(meta for meta, folders in taken if label in folders)
    placements = tuple(Placement(message=meta, folders=folders) for meta, folders in taken)
    held = [message_id for message_id in ids if message_id in dates]
    last_page = ended or not next_token
    flags = _page_flags(mailbox, known, label, ids, held, {**dates, **_dates_of(found)}, state, step, last_page)
    known.remember_listed(ids)
    if last_page:
        state.update(phase="sweep", page=None, flags={})
    else:
        state["page"] = next_token
    return Delta(upserts=upserts, flags=tuple(flags), placements=placements, cursor=_cursor(state))


def _within(ids, dates, bound):
    """The page's ids down to the walk's position, and whether the listing ends there."""
    if bound is None:
        return ids, False
    last_id, last_date = bound
    for position, message_id in enumerate(ids):
        if message_id == last_id:
            return ids[:position + 1], True
        when = dates.get(message_id)
        if when is not None and last_date is not None and when < last_date:
            return ids[:position], True
    return ids, False


def _dates_of(found):
    return {message_id: answer[0].internal_date for message_id, answer in found.items() if answer}


def _page_flags(mailbox, known, label, ids, held, dates, state, step, last_page):
    """FlagUpdates for the page's indexed ids, from the flag listings run alongside."""
    members = {}
    for flag in FLAG_LABELS:
        if flag == label:
            members[flag] = set(ids)  # Starred's and Drafts' own listings: every message has the flag
            continue
        members[flag] = _members(mailbox, known, label, flag, ids, dates, state, step, last_page)
    return [FlagUpdate(remote_id=message_id, flags=Flags(seen=message_id not in members["UNREAD"],
                                                         flagged=message_id in members["STARRED"],
                                                         draft=message_id in members["DRAFT"]))
            for message_id in held]


def _members(mailbox, known, label, flag, ids, dates, state, step, last_page):
    """The page's ids the listing of ``label`` AND ``flag`` names; it stops at the first id below the page."""
    listing = state["flags"].setdefault(flag, {"token": None, "done": False, "ahead": []})
    page_ids = set(ids)
    bottom = min((dates[message_id] for message_id in ids if dates.get(message_id) is not None), default=None)
    buffer, found, position = listing["ahead"], set(), 0
    last_member = _last_member(buffer, page_ids)
    while True:
        if position == len(buffer):
            if listing["done"] or not ids:
                break
            page = mailbox.list_page(label, step, listing["token"], (flag,))
            buffer = buffer + [item["id"] for item in page.get("messages") or ()]
            listing["token"] = page.get("nextPageToken")
            listing["done"] = not listing["token"]
            last_member = _last_member(buffer, page_ids)
            continue
        message_id = buffer[position]
        if message_id in page_ids:
            found.add(message_id)
            position += 1
            continue
        if position < last_member:
            position += 1  # the page's ids come after it: it joined the label after the page was listed
            continue
        when = _date(mailbox, known, message_id)
        if when is None or (bottom is not None and when > bottom):
            position += 1  # gone, or above the page's oldest: not this page's, nor a later one's
            continue
        break  # below the page: the next page's
    listing["ahead"] = [] if last_page else buffer[position:]
    return found


def _last_member(buffer, page_ids):
    return max((position for position, message_id in enumerate(buffer) if message_id in page_ids), default=-1)


def _date(mailbox, known, message_id):
    dates = known.dates([message_id])
    if message_id in dates:
        return dates[message_id]
    answer = mailbox.metadata([message_id], "placing a message in a listing").get(message_id)
    return answer[0].internal_date if answer else None


# -- the sweep --------------------------------------------------------------------


def _sweep_step(mailbox, folder, known, state, step, bound):
    """Rows the listing never named, a step at a time: read again, removed if Gmail's label lacks them."""
    label = folder.remote_id
    candidates = known.unlisted()
    if candidates and bound is not None:
        # Below the walk's position the listing did not look: those rows are the walk's (and the feed's).
        last_date = bound[1]
        dated = known.dates(candidates)
        candidates = {message_id for message_id in candidates
                      if last_date is not None and (dated.get(message_id) is None or dated[message_id] >= last_date)}
    chunk = sorted(candidates)[:step]
    found = mailbox.metadata(chunk, f"checking messages of {folder.path!r}") if chunk else {}
    removed, flags, kept = set(), [], []
    for message_id in chunk:
        answer = found.get(message_id)
        if answer is None or label not in answer[1]:
            removed.add(message_id)
            continue
        kept.append(message_id)
        flags.append(FlagUpdate(remote_id=message_id, flags=answer[0].flags))
    if removed:
        _logger.info("Folder %s: %d indexed message(s) are no longer in the label.", folder.path, len(removed))
    if len(candidates) > len(chunk):
        known.remember_listed(kept)  # checked: not a candidate again
        return Delta(flags=tuple(flags), removed=frozenset(removed), cursor=_cursor(state))
    known.forget_listed()
    return Delta(flags=tuple(flags), removed=frozenset(removed), cursor={"reconcile_cursor": None},
                              reconciled=True)
