"""The engine's ImapSession port over one logged-in IMAPClient.

Capabilities are honoured as advertised, never guessed: without CONDSTORE
no MODSEQ or CHANGEDSINCE is sent, even to a server that would accept them.
Every exception that leaves a method is an ``application.errors`` one.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Sequence

from imapclient import IMAPClient
from imapclient.exceptions import ProtocolError

from ...application.domain import ChangeSet, Flags, FlagUpdate, FolderStatus, MessageMeta, RemoteFolder
from ...application.errors import ConnectionFailed, FolderNotFound, ServerError
from . import wire
from .connection import ImapConfig, connect, drop, log_out, server_capabilities
from .failures import translated
from .folders import list_folders
from .metadata import MINIMAL_ITEMS, fetch_items, flag_modseq, message_meta

_logger = logging.getLogger(__name__)

# What imapclient's parser raises on an answer it cannot make sense of.
_UNPARSEABLE = (ProtocolError, ValueError, TypeError, IndexError, KeyError, AttributeError)


class ImapSessionAdapter:
    """One authenticated connection; folder methods act on the folder last selected."""

    def __init__(self, client: IMAPClient):
        self._client = client
        self._where = f"{client.host}:{client.port}"
        self._closed = self._broken = False
        with self._errors("reading the server's capabilities"):
            advertised = server_capabilities(client)
            self.capabilities = self._enable_extensions(advertised)
        self._condstore = "CONDSTORE" in self.capabilities
        self._qresync = "QRESYNC" in self.capabilities
        self._metadata_items = fetch_items(self._condstore)
        self._minimal_items = fetch_items(self._condstore, MINIMAL_ITEMS)

    @classmethod
    def open(cls, config: ImapConfig) -> ImapSessionAdapter:
        client = connect(config)
        try:
            return cls(client)
        except BaseException:
            drop(client)
            raise

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    # -- the ImapSession port ---------------------------------------------------

    def list_folders(self) -> list[RemoteFolder]:
        with self._errors("listing folders"):
            return list_folders(self._client)

    def select(self, path: str) -> FolderStatus:
        with self._errors(f"opening folder {path!r}"):
            try:
                response = self._client.select_folder(path, readonly=True)
            except IMAPClient.AbortError:
                raise
            except IMAPClient.Error as error:
                if self._folder_is_gone(path, error):
                    raise FolderNotFound(f"Folder {path!r} no longer exists on {self._where}.", path=path) from error
                raise
            return self._status(path, response)

    def search_uids(self, low: int = 1, high: int | None = None) -> list[int]:
        low = max(low, 1)
        if high is not None and high < low:
            return []
        with self._errors("listing message UIDs"):
            found = self._client.search(["UID", f"{low}:{'*' if high is None else high}"])
        # "n:*" always matches the highest UID, even one below n (RFC 3501 §6.4.8).
        return sorted(uid for uid in found if uid >= low and (high is None or uid <= high))

    def fetch_metadata(self, uids: Sequence[int]) -> list[MessageMeta]:
        uids = sorted(set(uids))
        if not uids:
            return []
        with self._errors(f"fetching {len(uids)} message(s)"):
            return self._fetch_metadata(uids)

    def fetch_flags(self, low: int, high: int) -> list[FlagUpdate]:
        if high < low:
            return []
        items = ["FLAGS", "MODSEQ"] if self._condstore else ["FLAGS"]
        with self._errors("reading flags"):
            return _flag_updates(wire.parse_fetch(wire.uid_fetch(self._client, f"{low}:{high}", items)), low, high)

    def fetch_changes_since(self, modseq: int, low: int, high: int) -> ChangeSet:
        if high < low:
            return ChangeSet()
        if not self._condstore:
            # No CHANGEDSINCE without CONDSTORE: every message counts as changed.
            return ChangeSet(updates=tuple(self.fetch_flags(low, high)))
        modifiers = [f"CHANGEDSINCE {modseq}", *(["VANISHED"] if self._qresync else [])]
        with self._errors("reading flag changes"):
            raw = wire.uid_fetch(self._client, f"{low}:{high}", ["FLAGS"], modifiers)
            updates = _flag_updates(wire.parse_fetch(raw), low, high)
            vanished = wire.pop_vanished(self._client, low, high) if self._qresync else frozenset()
        return ChangeSet(updates=tuple(updates), vanished=vanished)

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            (drop if self._broken else log_out)(self._client)

    # -- internals ----------------------------------------------------------------

    @contextlib.contextmanager
    def _errors(self, action):
        try:
            with translated(self._where, action):
                yield
        except ConnectionFailed:
            self._broken = True
            raise

    def _enable_extensions(self, advertised: frozenset[str]) -> frozenset[str]:
        """ENABLE what needs it (RFC 5161); a QRESYNC the server will not enable is not offered."""
        wanted = [name for name in ("CONDSTORE", "QRESYNC") if name in advertised]
        if not wanted or "ENABLE" not in advertised:
            # Without ENABLE, SELECT returns no HIGHESTMODSEQ and the engine scans flags instead.
            return advertised - {"QRESYNC"}
        enabled = {name.decode().upper() for name in self._client.enable(*wanted)}
        refused = set(wanted) - enabled - ({"CONDSTORE"} if "QRESYNC" in enabled else set())
        if refused:
            _logger.info("%s advertises but did not enable %s; not using it.", self._where, ", ".join(refused))
        return advertised - refused

    def _status(self, path, response) -> FolderStatus:
        if b"UIDVALIDITY" not in response:
            raise ServerError(f"{self._where} opened folder {path!r} without a UIDVALIDITY; it cannot be synced.")
        uidnext = response.get(b"UIDNEXT")
        if uidnext is None:  # RFC 3501 requires it; some servers send it only on STATUS
            uidnext = self._client.folder_status(path, [b"UIDNEXT"])[b"UIDNEXT"]
        return FolderStatus(
            uidvalidity=response[b"UIDVALIDITY"],
            uidnext=uidnext,
            exists=response.get(b"EXISTS", 0),
            highest_modseq=response.get(b"HIGHESTMODSEQ") if self._condstore else None,
        )

    def _folder_is_gone(self, path, error) -> bool:
        if "[NONEXISTENT]" in str(error).upper():  # RFC 5530
            return True
        return not any(folder.path == path for folder in list_folders(self._client))

    def _fetch_metadata(self, uids: list[int]) -> list[MessageMeta]:
        """One UID FETCH; a chunk the server refuses (``NO``, as Gmail and Yahoo do for
        single broken messages) or that imapclient cannot parse is split until the
        culprits are alone, so one bad message never holds back the others."""
        try:
            by_uid = wire.parse_fetch(wire.uid_fetch(self._client, _uid_set(uids), self._metadata_items))
        except (ServerError, *_UNPARSEABLE) as error:
            if len(uids) == 1:
                return self._minimal_metadata(uids[0], error)
            middle = len(uids) // 2
            return self._fetch_metadata(uids[:middle]) + self._fetch_metadata(uids[middle:])
        return [message_meta(uid, by_uid[uid]) for uid in uids if uid in by_uid]

    def _minimal_metadata(self, uid: int, error) -> list[MessageMeta]:
        if isinstance(error, ServerError):
            reason = f"the server refused to send this message's details ({error})"[:300]
        else:
            reason = f"the server's answer could not be parsed ({type(error).__name__}: {error})"[:300]
        _logger.warning("%s: message UID %s: %s; indexing flags and size only.", self._where, uid, reason)
        try:
            by_uid = wire.parse_fetch(wire.uid_fetch(self._client, str(uid), self._minimal_items))
        except (ServerError, *_UNPARSEABLE):
            return [MessageMeta(uid=uid, parse_error=reason)]
        return [message_meta(uid, by_uid[uid], known_error=reason)] if uid in by_uid else []


def _flag_updates(by_uid: dict[int, dict], low: int, high: int) -> list[FlagUpdate]:
    return [
        FlagUpdate(uid=uid, flags=Flags.from_imap(data.get(b"FLAGS", ())), modseq=flag_modseq(data))
        for uid, data in sorted(by_uid.items())
        # Unsolicited FETCH responses for other messages may ride along.
        if low <= uid <= high and b"FLAGS" in data
    ]


def _uid_set(uids: list[int]) -> str:
    """Sorted UIDs as a compact IMAP set: 1:4,7,9:12."""
    ranges = []
    start = previous = uids[0]
    for uid in uids[1:]:
        if uid != previous + 1:
            ranges.append(f"{start}:{previous}" if previous > start else str(start))
            start = uid
        previous = uid
    ranges.append(f"{start}:{previous}" if previous > start else str(start))
    return ",".join(ranges)
