"""The engine's Mailbox port for IMAP: folders and deltas over one session.

``session.py`` speaks IMAP (SELECT, SEARCH, FETCH, CONDSTORE, VANISHED);
this module answers the engine's neutral questions with it: is this
folder the one we knew, what is below the walk cursor, what changed
(``changes.py``). Every UID SEARCH it sends is bounded to a window, so no
folder is too big to index, and a session that broke mid-answer is
replaced by a new one before the next step.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
from concurrent.futures import ThreadPoolExecutor

from ...application.domain import BackfillState, Delta, FolderOpened, FolderState, RemoteFolder
from ...application.errors import FolderNotFound, ServerError
from .changes import folder_changes
from .connection import ImapConfig
from .session import AnswerTooLong, ImapSessionAdapter

_logger = logging.getLogger(__name__)

#: UIDs a first downward search covers per message wanted: dense folders need
#: one round trip, sparse ones widen the window (x4 each time, up to the cap).
_FIRST_SPAN_FACTOR = 2
#: empty windows one call steps through before returning the progress made (servers without ESEARCH)
_EMPTY_WINDOWS = 8


def _in_ahead_thread() -> bool:
    return threading.current_thread().name.startswith("maildesk-imap-ahead")


def _settle(ahead) -> None:
    """Wait for a page fetched ahead that nobody will use; its error, if any, is the next call's
    (a broken session is replaced on next use)."""
    if ahead is not None:
        try:
            ahead[1].result()
        except Exception as error:  # not this caller's page; see the docstring
            _logger.debug("A page fetched ahead was not used: %s", error)


class ImapMailbox:
    provider = "imap"

    def __init__(self, session: ImapSessionAdapter, config: ImapConfig | None = None,
                 search_window: int = 20000):
        self._session = session
        self._config = config
        self._search_window = search_window
        self._opened = {}  # folder id -> FolderStatus of the last open()
        self._selected = None  # path of the folder the session has selected
        self._ahead = None  # ((path, below, limit), Future[Delta]): the next page of older(), in flight
        self._pool = None
        # The port too: another port of the same host may be another server (a tunnel, a
        # proxy); re-indexing a mailbox that was the same costs time, never correctness.
        self.identity = (f"imap://{config.login}@{config.host}:{config.port}".lower() if config
                         else f"imap://{session}")

    @classmethod
    def open_account(cls, config: ImapConfig, search_window: int = 20000) -> ImapMailbox:
        return cls(ImapSessionAdapter.open(config), config, search_window)

    @property
    def session(self) -> ImapSessionAdapter:
        """The live session; one that broke mid-answer is replaced first (it cannot be trusted).

        A page fetched ahead (``older``) owns the session until it is done;
        the background thread itself gets it through ``_session`` directly.
        """
        if self._ahead is not None and not _in_ahead_thread():
            ahead, self._ahead = self._ahead, None
            _settle(ahead)
        if self._session.broken and self._config is not None:
            self._session.close()
            self._session = ImapSessionAdapter.open(self._config)
            self._opened.clear()
            self._selected = None
        return self._session

    @property
    def capabilities(self) -> frozenset[str]:
        return self.session.capabilities

    def close(self) -> None:
        ahead, self._ahead = self._ahead, None
        _settle(ahead)  # a page fetched ahead for a run that ended: wait, so the socket is ours to close
        if self._pool is not None:
            self._pool.shutdown(wait=True)
        self._session.close()

    # -- folders ----------------------------------------------------------------

    def list_folders(self) -> list[RemoteFolder]:
        """With OBJECTID (RFC 8474) a folder is known by its MAILBOXID, which survives renames."""
        folders = self.session.list_folders()
        if "OBJECTID" not in self.capabilities:
            return folders
        return [dataclasses.replace(folder, remote_id=self.session.mailbox_id(folder.path) or folder.path)
                if folder.selectable else folder for folder in folders]

    def confirm_gone(self, folder: FolderState) -> bool:
        self._selected = None
        try:
            self.session.select(folder.path)
        except FolderNotFound as error:
            return error.proven
        except ServerError:
            return False  # the server is unsure; so are we
        return False  # it opens: the listing was wrong

    def same_folder(self, old: FolderState, new: RemoteFolder, sample) -> bool:
        """Is ``new`` the folder ``old`` renamed? Only on evidence a new folder cannot fake.

        A rename keeps UIDVALIDITY, UIDNEXT and the messages; a folder created
        in the same second as the old one was deleted can share UIDVALIDITY,
        but not also UIDNEXT, the message count and the newest message.
        """
        self._selected = new.path
        try:
            status = self.session.status(new.path)
        except (FolderNotFound, ServerError):
            return False
        if (status.uidvalidity, status.uidnext, status.exists) != (old.uidvalidity, old.uidnext, old.server_exists):
            return False
        if not status.exists:
            return False  # nothing to carry over: indexing it anew costs nothing
        if sample is None:
            return False
        uid, message_id = sample
        found = self.session.fetch_metadata([int(uid)])
        return bool(found) and message_id is not None and found[0].message_id == message_id

    def open(self, folder: FolderState) -> FolderOpened:
        self._selected = None
        status = self.session.select(folder.path)
        self._opened[folder.id] = status
        self._selected = folder.path
        # UIDs mean something only within one UIDVALIDITY; and within one,
        # UIDNEXT never goes down (a folder deleted and re-created in the same
        # second keeps the UIDVALIDITY, not the UIDNEXT).
        reset = bool(folder.uidvalidity) and (
            status.uidvalidity != folder.uidvalidity or status.uidnext < (folder.uidnext or 0))
        unchanged = (
            status.highest_modseq is not None
            and status.highest_modseq == folder.highest_modseq
            and status.uidnext == folder.uidnext
            and status.exists == folder.server_exists
        )
        pin = {
            "uidvalidity": status.uidvalidity, "uidnext": status.uidnext,
            "highest_modseq": status.highest_modseq, "server_exists": status.exists,
            "last_uid": max(status.uidnext - 1, 0), "low_uid": max(status.uidnext, 1),
        }
        return FolderOpened(reset=reset, unchanged=unchanged, pin=pin)

    # -- messages ---------------------------------------------------------------

    def older(self, folder: FolderState, limit: int, then: int | None = None) -> Delta:
        """The newest ``limit`` messages below ``folder.walk_below``.

        With ``then`` (the size of the page the caller asks for next), the
        next page is fetched in the background while the engine stores this
        one: the server's FETCH and the database's INSERT overlap instead of
        taking turns. The session is used by one thread at a time: every
        other call waits for that page first.
        """
        key = (folder.path, folder.walk_below, limit)
        ahead, self._ahead = self._ahead, None
        if ahead is not None and ahead[0] == key:
            delta = ahead[1].result()  # raises what the background fetch raised
        else:
            _settle(ahead)
            delta = self._page_below(folder.walk_below, limit)
        below = delta.cursor["low_uid"]
        if then and delta.cursor.get("backfill_state") != BackfillState.DONE:
            if self._pool is None:
                self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="maildesk-imap-ahead")
            self._ahead = ((folder.path, below, then), self._pool.submit(self._page_below, below, then))
        return delta

    def _page_below(self, below: int, limit: int) -> Delta:
        """Windows of UIDs are searched downwards until enough are found, so the
        answer to each SEARCH stays small whatever the folder's size. The cursor
        moves to the lowest UID fetched, or to the bottom of what was searched
        when everything found was taken."""
        session = self.session
        esearch = "ESEARCH" in self.capabilities
        high = below - 1
        span = min(max(limit * _FIRST_SPAN_FACTOR, 64), self._search_window)
        found, empty = [], 1  # the first window counts as after an empty one: look where mail is
        while high >= 1 and len(found) < limit:
            if esearch and empty:
                # Jump a gap of expunged UIDs in one round trip.
                top = session.last_uid_below(high)
                high = top if top is not None else 0
                if high < 1:
                    break
            low = max(1, high - span + 1)
            window = session.search_uids(low, high)
            found = window + found
            high = low - 1
            span = min(span * 4, self._search_window)
            empty = 0 if window else empty + 1
            if empty >= _EMPTY_WINDOWS:
                break  # a long gap without ESEARCH: move the cursor, let the engine check its deadline
        taken = found[-limit:] if limit else []
        messages = self.fetch_metadata(taken) if taken else []
        if len(found) > len(taken):
            cursor = {"low_uid": taken[0]}
        else:
            cursor = {"low_uid": max(high + 1, 1)}
            if high < 1:
                cursor["backfill_state"] = BackfillState.DONE
        return Delta(upserts=tuple(messages), cursor=cursor)

    def changes(self, folder, known, reconcile, settings):
        status = self._opened.get(folder.id)
        if status is None or self._selected != folder.path:
            raise RuntimeError("changes() needs the folder opened first")
        return folder_changes(self, folder, status, known, reconcile, settings)

    def fetch_raw(self, folder: FolderState, remote_id: str) -> bytes | None:
        """None also when the folder's UIDVALIDITY changed: the UID may name another message now."""
        if self._selected != folder.path or folder.id not in self._opened:
            if self.open(folder).reset:
                return None
        elif folder.uidvalidity and self._opened[folder.id].uidvalidity != folder.uidvalidity:
            return None
        return self.session.fetch_raw(int(remote_id))

    def fetch(self, folder: FolderState, remote_ids) -> list:
        if self._selected != folder.path:
            self.open(folder)
        return self.fetch_metadata(sorted(int(remote_id) for remote_id in remote_ids))

    def fetch_metadata(self, uids) -> list:
        """FETCH the metadata of ``uids`` in the selected folder; a message whose answer is too
        long for imaplib (thousands of MIME parts make one huge BODYSTRUCTURE line) ends the
        session: open a new one, split the request, and index the culprit from what fits."""
        try:
            return self.session.fetch_metadata(uids)
        except AnswerTooLong as error:
            self.reselect()
            uids = sorted(uids)
            if len(uids) > 1:
                middle = len(uids) // 2
                return self.fetch_metadata(uids[:middle]) + self.fetch_metadata(uids[middle:])
            reason = f"the server's answer for this message is too long to read ({error})"[:300]
            _logger.warning("%s: message UID %s: %s", self._config.host if self._config else "?", uids[0], reason)
            return self.session.fetch_minimal(uids[0], reason)

    def reselect(self):
        """After a broken session: a new one, with the same folder selected."""
        path = self._selected
        session = self.session  # reopens
        if path is not None:
            session.select(path)
            self._selected = path
