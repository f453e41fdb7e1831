"""The engine's Mailbox port for Outlook / Microsoft 365, over Microsoft Graph v1.0.

- Folders: ``folders.py`` (ids survive renames and moves; roles from the well-known names).
- Opening a folder costs nothing, except the first time: then it takes a
  deltaLink for "from now on" (``$deltatoken=latest``), the pin, so mail
  arriving while the history is walked is the delta's.
- The walk down: ``messages`` newest first (``$orderby=receivedDateTime
  desc``), by keyset: the ``backfill_cursor`` is the receivedDateTime of
  the oldest message indexed (with the ids indexed at that time), and the
  next page is ``$filter=receivedDateTime le`` it (never Graph's offset
  nextLink, which mail deleted above the walk would shift); the next page
  is fetched while the engine stores this one.
- Changes: ``changes.py`` (messages/delta).
- The sparse repair and single messages: ``$batch`` of ``GET /me/messages/{id}``.

A message id is immutable and unique in the mailbox (``Prefer:
IdType="ImmutableId"`` on every request), hence ``moves_keep_ids``.
"""

from __future__ import annotations

import json
import logging
import urllib.parse
from concurrent.futures import ThreadPoolExecutor

from ...application.domain import BackfillState, Delta, FolderOpened, FolderState, FolderSyncState
from ...application.errors import FolderNotFound
from . import folders as folder_listing
from .changes import folder_changes, latest_link
from .config import OutlookConfig
from .graph import GraphClient, GraphError
from .mapper import MESSAGE_FIELDS, SIZE_EXPAND, message_meta, utc

_logger = logging.getLogger(__name__)

#: Graph serves at most 1000 messages per page.
_MAX_PAGE = 1000


def _settle(ahead) -> None:
    """Wait for a page fetched ahead that nobody will use; its error, if any, is not this caller's."""
    if ahead is not None:
        try:
            ahead[1].result()
        except Exception as error:  # the next call asks again and meets it, if it lasts
            _logger.debug("A page fetched ahead was not used: %s", error)


class Keyset:
    """Where the walk down stands: the receivedDateTime of the oldest message indexed, and the ids
    indexed at exactly that time (the next query asks ``le`` that time and leaves them out)."""

    def __init__(self, received: str | None = None, ids=()):
        self.received, self.ids = received, set(ids)

    @classmethod
    def parse(cls, text: str | None) -> Keyset:
        if not text or not text.startswith("{"):
            return cls()  # the top; an offset link kept by an older version is not trusted
        value = json.loads(text)
        return cls(value.get("before"), value.get("ids") or ())

    def dump(self) -> str | None:
        if self.received is None:
            return None
        return json.dumps({"before": self.received, "ids": sorted(self.ids)}, separators=(",", ":"))

    def query(self) -> dict:
        # No $top: it would fix the size of every later page; odata.maxpagesize is per request.
        params = {"$select": MESSAGE_FIELDS, "$orderby": "receivedDateTime desc", "$expand": SIZE_EXPAND}
        if self.received is not None:
            # Graph wants a property of $orderby in $filter too, first, or it refuses the query as inefficient.
            params["$filter"] = f"receivedDateTime le {self.received}"
        return params

    def take(self, item: dict) -> bool:
        """Whether ``item`` is new to the walk; moves the position down to it."""
        received = item.get("receivedDateTime")
        if not received or utc(received) is None:
            return True  # Graph always says; if not, indexing it twice is harmless (the position stays)
        if self.received is not None:
            here, there = utc(received), utc(self.received)
            if here > there or (here == there and item["id"] in self.ids):
                return False
            if here == there:
                self.ids.add(item["id"])
                return True
        self.received, self.ids = received, {item["id"]}
        return True


class OutlookMailbox:
    provider = "outlook"
    moves_keep_ids = True

    def __init__(self, config: OutlookConfig, graph: GraphClient | None = None):
        self.config = config
        self.graph = graph or GraphClient(config)
        self._identity = None
        self._ahead = None  # ((folder id, cursor, limit), Future[Delta]): the next page of older(), in flight
        self._ahead_pool = None

    @property
    def deadline(self) -> float | None:
        """time.monotonic() by which the engine's run must end (the engine sets it): no request waits past it."""
        return self.graph.deadline

    @deadline.setter
    def deadline(self, value: float | None) -> None:
        self.graph.deadline = value

    @classmethod
    def open_account(cls, config: OutlookConfig) -> OutlookMailbox:
        """Signed in, and sure which mailbox it is: errors show here, before any work."""
        mailbox = cls(config)
        try:
            _ = mailbox.identity
        except BaseException:
            mailbox.close()
            raise
        return mailbox

    @property
    def identity(self) -> str:
        """``outlook:`` and the address Graph says this mailbox has (``/me``), asked once."""
        if self._identity is None:
            me = self.graph.get("/me", params={"$select": "mail,userPrincipalName"}, what="reading the account")
            address = me.get("mail") or me.get("userPrincipalName") or self.config.email
            self._identity = f"outlook:{address.lower()}"
        return self._identity

    def close(self) -> None:
        ahead, self._ahead = self._ahead, None
        _settle(ahead)
        if self._ahead_pool is not None:
            self._ahead_pool.shutdown(wait=True)
        self.graph.close()

    # -- folders ----------------------------------------------------------------

    def list_folders(self):
        return folder_listing.list_folders(self.graph)

    def confirm_gone(self, folder: FolderState) -> bool:
        try:
            self.graph.get(f"/me/mailFolders/{folder.remote_id}", params={"$select": "id"},
                           what=f"looking for folder {folder.path!r}")
        except GraphError as error:
            return error.status == 404
        return False  # it is there: the listing missed it

    def same_folder(self, old, new, sample) -> bool:
        return False  # folder ids survive renames: a vanished id is a deleted folder

    def open(self, folder: FolderState) -> FolderOpened:
        """No round trip, except on a first visit (the pin); a missing folder shows at the next request."""
        if folder.sync_state != FolderSyncState.NEW:
            return FolderOpened()
        return FolderOpened(pin={"sync_cursor": latest_link(self.graph, folder), "backfill_cursor": None,
                                 "backfill_state": BackfillState.PENDING})

    # -- messages ---------------------------------------------------------------

    def older(self, folder: FolderState, limit: int, then: int | None = None) -> Delta:
        """The next ``limit`` messages below the walk cursor, newest first.

        With ``then`` (the size of the page asked for next), that page is
        fetched while the engine stores this one.
        """
        key = (folder.id, folder.backfill_cursor, limit)
        ahead, self._ahead = self._ahead, None
        if ahead is not None and ahead[0] == key:
            delta = ahead[1].result()  # raises what the fetch raised
        else:
            _settle(ahead)
            delta = self._page(folder, folder.backfill_cursor, limit)
        cursor = delta.cursor.get("backfill_cursor")
        if then and cursor:
            if self._ahead_pool is None:
                self._ahead_pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="maildesk-graph-ahead")
            self._ahead = ((folder.id, cursor, then), self._ahead_pool.submit(self._page, folder, cursor, then))
        return delta

    def _page(self, folder: FolderState, cursor: str | None, limit: int) -> Delta:
        """Up to ``limit`` messages below the keyset ``cursor``, newest first.

        Never an ``@odata.nextLink`` across calls: Graph's links for this
        listing are offsets (``$skip=N``), so mail deleted or moved above
        the walk between two runs would shift unseen messages above the
        offset and they would never be indexed. Each page asks again for
        what was received at or before the last message indexed.
        """
        position = Keyset.parse(cursor)
        messages, link, done = [], None, False
        while len(messages) < limit:
            url, params = (link, None) if link else (f"/me/mailFolders/{folder.remote_id}/messages",
                                                     position.query())
            try:
                page = self.graph.get(url, params=params, page_size=min(limit - len(messages), _MAX_PAGE),
                                      what=f"reading folder {folder.path!r}")
            except GraphError as error:
                if error.status == 404:
                    raise FolderNotFound(f"Folder {folder.path!r} is gone from the mailbox.",
                                         path=folder.path) from error
                if error.status == 400 and link:
                    _logger.info("Folder %s: Graph refused a page link (%s); asking from the walk's position.",
                                 folder.path, error.code or error.status)
                    link = None
                    continue
                raise
            fresh = [item for item in page.get("value") or () if item.get("id") and position.take(item)]
            messages.extend(message_meta(item) for item in fresh)
            next_link = page.get("@odata.nextLink")
            if not next_link:
                done = True
                break
            # A page of nothing new: more messages share the position's time than fit a page.
            # Only then, and within this call, is the offset link followed.
            link = None if fresh else next_link
        cursor = {"backfill_cursor": None if done else position.dump()}
        if done:
            cursor["backfill_state"] = BackfillState.DONE
        return Delta(upserts=tuple(messages), cursor=cursor)

    def changes(self, folder, known, reconcile, settings):
        return folder_changes(self.graph, folder, known, reconcile, settings.chunk)

    def fetch(self, folder: FolderState, remote_ids) -> list:
        """Messages described again, by id, through ``$batch``. A message Graph does not know any
        more (404), or that it keeps refusing, is left out: the engine counts an attempt."""
        query = "?" + urllib.parse.urlencode({"$select": MESSAGE_FIELDS, "$expand": SIZE_EXPAND},
                                             quote_via=urllib.parse.quote, safe="$,()='")
        answers = self.graph.batch({remote_id: f"/me/messages/{remote_id}{query}" for remote_id in remote_ids},
                                   what=f"reading messages of folder {folder.path!r}")
        found = []
        for remote_id in remote_ids:
            status, body = answers.get(remote_id, (0, {}))
            if status == 200 and body.get("id"):
                if body.get("parentFolderId", folder.remote_id) != folder.remote_id:
                    continue  # moved meanwhile: its new folder's delta moves the row, with what it says
                found.append(message_meta(body))
            else:
                _logger.info("Folder %s: message %s not described (HTTP %s).", folder.path, remote_id[-12:], status)
        return found

    def fetch_raw(self, folder: FolderState, remote_id: str) -> bytes | None:
        """The MIME of a message (``/$value``), as Exchange rebuilds it; None when it is gone."""
        what = f"reading a message of folder {folder.path!r}"
        response = self.graph.send("GET", f"/me/messages/{remote_id}/$value", what=what)
        if response.status_code == 404:
            return None
        if response.status_code >= 300:
            self.graph.check(response, what)
        return response.content
