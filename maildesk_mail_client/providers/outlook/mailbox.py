"""The engine's Mailbox port for Outlook / Microsoft 365, over Microsoft Graph v1.0.

- Folders: ``folders.py`` (ids survive renames and moves; roles from the well-known names).
- Opening a folder costs nothing, except the first time: then it takes a
  deltaLink for "from now on" (``$deltatoken=latest``), the pin, so mail
  arriving while the history is walked is the delta's.
- The walk down: ``messages`` newest first (``$orderby=receivedDateTime
  desc``), its ``@odata.nextLink`` stored as the folder's
  ``backfill_cursor``; the next page is fetched while the engine stores
  this one.
- Changes: ``changes.py`` (messages/delta).
- The sparse repair and single messages: ``$batch`` of ``GET /me/messages/{id}``.

A message id is immutable and unique in the mailbox (``Prefer:
IdType="ImmutableId"`` on every request), hence ``moves_keep_ids``.
"""

from __future__ import annotations

import logging
import urllib.parse
from concurrent.futures import ThreadPoolExecutor

from ...application.domain import BackfillState, Delta, FolderOpened, FolderState, FolderSyncState
from ...application.errors import FolderNotFound
from . import folders as folder_listing
from .changes import folder_changes, latest_link
from .config import OutlookConfig
from .graph import GraphClient, GraphError
from .mapper import MESSAGE_FIELDS, SIZE_EXPAND, message_meta

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


class OutlookMailbox:
    provider = "outlook"
    moves_keep_ids = True

    def __init__(self, config: OutlookConfig, graph: GraphClient | None = None):
        self.config = config
        self.graph = graph or GraphClient(config)
        self._identity = None
        self._ahead = None  # ((folder id, cursor, limit), Future[Delta]): the next page of older(), in flight
        self._ahead_pool = None

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
        if cursor:
            url, params = cursor, None
        else:
            url = f"/me/mailFolders/{folder.remote_id}/messages"
            # No $top: it would fix the size of every later page; odata.maxpagesize is per request,
            # so the 50 shown first and the capped pages after come from one cursor.
            params = {"$select": MESSAGE_FIELDS, "$orderby": "receivedDateTime desc", "$expand": SIZE_EXPAND}
        messages = []
        while url and len(messages) < limit:
            try:
                page = self.graph.get(url, params=params, page_size=min(limit - len(messages), _MAX_PAGE),
                                      what=f"reading folder {folder.path!r}")
            except GraphError as error:
                if error.status == 404:
                    raise FolderNotFound(f"Folder {folder.path!r} is gone from the mailbox.",
                                         path=folder.path) from error
                raise
            messages.extend(message_meta(item) for item in page.get("value") or () if item.get("id"))
            url, params = page.get("@odata.nextLink"), None
        cursor = {"backfill_cursor": url}
        if not url:
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
