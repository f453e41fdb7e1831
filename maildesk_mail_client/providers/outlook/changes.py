"""What changed in one Outlook folder, from Graph's ``messages/delta``, as deltas the engine commits.

A round follows ``@odata.nextLink`` pages until Graph gives the
``@odata.deltaLink``; each page is one Delta committed with that page's
nextLink as ``sync_cursor`` (a valid continuation of the same round), and
only the last one carries the deltaLink. A worker killed, or stopped by
the run's deadline, in the middle of a round resumes at the next page;
upserts and removals are idempotent, nothing is skipped or walked twice.

Two kinds of round:

- incremental, from the stored deltaLink: what changed since;
- full, from no cursor: every message of the folder (the first sync of a
  folder never pinned, after Graph forgot our cursor, or a periodic
  reconciliation). The ids each page lists are kept in the database with
  that page (``KnownRows.remember_listed``), and ``reconcile_cursor``
  holds the nextLink, so a round spread over several runs still knows
  what it listed; the last page removes what the index holds but the
  round never named, and says ``reconciled``. Unchanged rows are upserted
  unchanged, which the index ignores: no hook fires for them.

``@removed`` means deleted *or moved out*. With immutable ids a moved
message shows up in its new folder's delta under the same id, and the
engine (``moves_keep_ids``) moves its index row there, whatever order the
two folders are synced in.

A delta may name a message without describing it; it is indexed with
what is known and ``refetch`` set, and the engine's sparse repair asks
for it again (``OutlookMailbox.fetch``).
"""

from __future__ import annotations

import logging

from ...application.domain import Delta
from ...application.errors import CursorExpired, FolderNotFound
from .graph import GraphClient, GraphError
from .mapper import MESSAGE_FIELDS, flag_update, is_full, message_meta, thin_message

_logger = logging.getLogger(__name__)

#: Graph's ways of saying "that deltaLink means nothing to me any more" (410 Gone, or a 400 with these codes)
_EXPIRED_CODES = frozenset({"syncstatenotfound", "resyncrequired", "syncstateinvalid", "invalidsynctoken"})
_MAX_PAGE = 1000
_REMOVED = object()
THIN_REASON = "Graph's change feed named this message without describing it; it is asked for again."


def delta_start(folder_id: str) -> str:
    return f"/me/mailFolders/{folder_id}/messages/delta"


def is_expired(error: GraphError) -> bool:
    return error.status == 410 or error.code.lower() in _EXPIRED_CODES


def latest_link(graph: GraphClient, folder) -> str:
    """A deltaLink for "from now on", without listing the folder (``$deltatoken=latest``).

    Taken when a folder is first opened, before its history is walked:
    what arrives meanwhile is the delta's, what was there the walk's.
    """
    page = _get(graph, folder, delta_start(folder.remote_id),
                {"$select": MESSAGE_FIELDS, "$deltatoken": "latest"}, None)
    # A server that lists the folder anyway gives a nextLink first: follow it to the deltaLink.
    while "@odata.deltaLink" not in page and page.get("@odata.nextLink"):
        page = _get(graph, folder, page["@odata.nextLink"], None, None)
    link = page.get("@odata.deltaLink")
    if not link:
        raise GraphError(f"Microsoft Graph gave no deltaLink for folder {folder.path!r}.", 200)
    return link


def folder_changes(graph: GraphClient, folder, known, reconcile: bool, page_size: int):
    """The Deltas of one round; see the module's docstring."""
    url, params, full = _start(folder, known, reconcile)
    page_size = max(1, min(page_size, _MAX_PAGE))
    while True:
        page = _get(graph, folder, url, params, page_size)
        last = {}
        for item in page.get("value") or ():
            if item.get("id"):
                last[item["id"]] = _REMOVED if "@removed" in item else item  # the latest word on an id wins
        removed = {remote_id for remote_id, item in last.items() if item is _REMOVED}
        present = {remote_id: item for remote_id, item in last.items() if item is not _REMOVED}
        thin = [remote_id for remote_id, item in present.items() if not is_full(item)]
        indexed = known.present(thin) if thin else set()  # this page's ids only, never the whole folder
        upserts, flags = [], []
        for remote_id, item in present.items():
            if is_full(item):
                upserts.append(message_meta(item))
                continue
            update = flag_update(item)
            if remote_id in indexed:
                if update is not None:
                    flags.append(update)  # an indexed message whose flags changed: nothing else to ask
            else:
                upserts.append(thin_message(item, THIN_REASON))
        if full:
            # Committed with this page's changes, so a round cut short resumes knowing what it listed.
            known.forget_listed(removed)
            known.remember_listed(set(present))
        next_link, delta_link = page.get("@odata.nextLink"), page.get("@odata.deltaLink")
        if next_link:
            # A resume point, stored with the changes it follows: a killed or deadline-cut round
            # carries on from here. A full round also says so in reconcile_cursor.
            cursor = {"sync_cursor": next_link}
            if full:
                cursor["reconcile_cursor"] = next_link
            yield Delta(upserts=tuple(upserts), flags=tuple(flags), removed=frozenset(removed), cursor=cursor)
            url, params = next_link, None
            continue
        if not delta_link:
            raise GraphError(f"Microsoft Graph ended the changes of folder {folder.path!r} without a deltaLink.",
                             200)
        cursor = {"sync_cursor": delta_link}
        if full:
            # Every page of the round is listed (this one included, uncommitted but in the same
            # transaction): what the index holds and the round never named is gone.
            gone = known.unlisted() - set(present)
            if gone:
                _logger.info("Folder %s: %d indexed message(s) are no longer on the server.", folder.path, len(gone))
            removed |= gone
            known.forget_listed()
            cursor["reconcile_cursor"] = None
        yield Delta(upserts=tuple(upserts), flags=tuple(flags), removed=frozenset(removed), cursor=cursor,
                    reconciled=full)
        return


def _start(folder, known, reconcile):
    """(url, params, full) of the round to run: a full one resumed, a full one from scratch, or the changes."""
    resuming = folder.reconcile_cursor is not None and folder.reconcile_cursor == folder.sync_cursor
    if resuming and reconcile:
        return folder.sync_cursor, None, True  # a full round cut short: its next page
    if reconcile or not folder.sync_cursor:
        known.forget_listed()  # what an abandoned round listed says nothing about this one
        return delta_start(folder.remote_id), {"$select": MESSAGE_FIELDS}, True
    # A deltaLink, or the nextLink an incremental round stopped at: both carry on the same round.
    return folder.sync_cursor, None, False


def _get(graph, folder, url, params, page_size):
    try:
        return graph.get(url, params=params, page_size=page_size,
                         what=f"reading the changes of folder {folder.path!r}")
    except GraphError as error:
        if is_expired(error):
            raise CursorExpired(f"Microsoft Graph no longer knows the change cursor of folder {folder.path!r} "
                                f"({error.code or error.status})") from error
        if error.status == 404:
            raise FolderNotFound(f"Folder {folder.path!r} is gone from the mailbox.", path=folder.path) from error
        raise
