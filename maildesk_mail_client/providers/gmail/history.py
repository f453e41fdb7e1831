"""Gmail's history as the engine's account feed: one AccountDelta per page.

``history.list`` from the stored historyId, all four record types, 500
records a page. Records are events; the index wants state, and events
within a page can cancel out (a label added then removed, read then
unread), so every message a page touches is read once with
``messages.get(format=metadata)`` and its *current* labels decide:

- only UNREAD changed: a FlagUpdate, applied to every row of the message
  (the flags are per message in Gmail, not per label);
- anything else (new mail, a label added or removed, STARRED, which is a
  flag but also the Starred folder): a Placement, "the message is now in
  exactly these folders", with its metadata and flags;
- deleted (a ``messagesDeleted`` record, or the get answers 404): removed.

Being state, a step is safe to apply twice: a pass killed before its
commit is replayed from the same cursor with the same result.

Cursor: each page's step carries the highest record id of the page (the
records up to it are applied once it is stored; Gmail's ``startHistoryId``
means "records after this one"), the last page the response's historyId,
the mailbox's current one. So a pass stopped between pages resumes after
the last page stored, and the engine never moves the cursor backwards.
A 404 means the start id is older than Gmail keeps (about a week):
CursorExpired, and the engine reconciles folders by id.
"""

from __future__ import annotations

from ...application.domain import AccountDelta, FlagUpdate, Placement
from ...application.errors import CursorExpired
from . import mapper
from .client import NotFound

HISTORY_TYPES = ["messageAdded", "messageDeleted", "labelAdded", "labelRemoved"]
_ADDED = "\0added"  # marks a message the page adds: never a flag-only change


def account_changes(mailbox, cursor, settings):
    client = mailbox.client
    token = None
    while True:
        params = {"userId": "me", "startHistoryId": str(cursor), "historyTypes": HISTORY_TYPES,
                  "maxResults": client.config.history_page}
        if token:
            params["pageToken"] = token
        try:
            page = client.call(lambda params=params: client.history.list(**params),
                               "reading the mailbox's history")
        except NotFound as error:
            raise CursorExpired(f"{client.where} no longer keeps the history from {cursor}: "
                                "every folder is compared with the server by message id.") from error
        records = page.get("history") or []
        token = page.get("nextPageToken")
        step = page_delta(mailbox, records)
        if token:
            top = max((int(record["id"]) for record in records), default=None)
            yield AccountDelta(step.placements, step.flags, step.removed,
                               cursor=None if top is None else str(top), unknown_folders=step.unknown_folders)
            continue
        yield AccountDelta(step.placements, step.flags, step.removed, cursor=str(page["historyId"]),
                           unknown_folders=step.unknown_folders)
        return


def page_delta(mailbox, records) -> AccountDelta:
    changed: dict[str, set[str]] = {}  # message id -> labels the page changed (or _ADDED)
    deleted: set[str] = set()
    for record in records:
        for item in record.get("messagesAdded") or ():
            changed.setdefault(item["message"]["id"], set()).add(_ADDED)
        for key in ("labelsAdded", "labelsRemoved"):
            for item in record.get(key) or ():
                changed.setdefault(item["message"]["id"], set()).update(item.get("labelIds") or ())
        for item in record.get("messagesDeleted") or ():
            deleted.add(item["message"]["id"])  # Gmail never reuses an id: gone for good
    touched = [message_id for message_id in changed if message_id not in deleted]
    found = mailbox.metadata(touched, "reading changed messages") if touched else {}
    placements, flags, removed = [], [], set(deleted)
    known = mailbox.folder_ids
    unknown = False
    for message_id in touched:
        answer = found.get(message_id)
        if answer is None:
            removed.add(message_id)  # deleted after this page was written
            continue
        meta, folders = answer
        if changed[message_id] <= mapper.FLAG_LABELS:
            flags.append(FlagUpdate(remote_id=message_id, flags=meta.flags))
            continue
        placements.append(Placement(message=meta, folders=folders))
        unknown = unknown or known is None or not folders <= known
    return AccountDelta(tuple(placements), tuple(flags), frozenset(removed), unknown_folders=unknown)
