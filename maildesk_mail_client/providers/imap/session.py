"""The engine's ImapSession port over one logged-in IMAPClient.

Capabilities are honoured as advertised, never guessed: without CONDSTORE
no MODSEQ or CHANGEDSINCE is sent, even to a server that would accept them.
Every exception that leaves a method is an ``application.errors`` one.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import re
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
        self._esearch = "ESEARCH" in self.capabilities
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
                if not any(folder.path == path for folder in list_folders(self._client)):
                    # Not listed either, but the server did not say it does not exist: the
                    # next discoveries decide (a folder can miss one LIST).
                    raise FolderNotFound(f"Folder {path!r} is not listed on {self._where}: {error}.",
                                         path=path, proven=False) from error
                raise
            return self._status(path, response)

    def status(self, path: str) -> FolderStatus:
        """SELECT's numbers for another folder, without leaving this one's context for long:
        EXAMINE it (STATUS would not give HIGHESTMODSEQ on every server)."""
        return self.select(path)

    @property
    def broken(self) -> bool:
        """The connection can no longer be trusted: open a new one."""
        return self._broken

    def search_uids(self, low: int = 1, high: int | None = None) -> list[int]:
        """UIDs in ``low:high``, ascending. Callers keep the window bounded: a server
        answers a plain SEARCH on one line, and a line of 150,000 UIDs is one
        that imaplib refuses (its 1,000,000-byte limit)."""
        low = max(low, 1)
        if high is not None and high < low:
            return []
        with self._errors("listing message UIDs"):
            found = wire.uid_search(self._client, low, high if high is not None else "*", self._esearch)
        # "n:*" always matches the highest UID, even one below n (RFC 3501 §6.4.8).
        return sorted(uid for uid in found if uid >= low and (high is None or uid <= high))

    def mailbox_id(self, path: str) -> str | None:
        """RFC 8474 MAILBOXID of a folder, by STATUS; None when the server gives none."""
        with self._errors(f"reading the id of folder {path!r}"):
            status = self._client.folder_status(path, [b"MAILBOXID"])
        value = status.get(b"MAILBOXID")
        if isinstance(value, tuple | list):
            value = value[0] if value else None
        return _mailbox_id([value]) if value else None

    def fetch_raw(self, uid: int) -> bytes | None:
        """The whole message as the server stores it (``BODY.PEEK[]``: reading it does not
        set \\Seen, so opening a message in MailDesk never marks it read on the server).
        None when the message is gone."""
        with self._errors(f"fetching message UID {uid}"):
            by_uid = wire.parse_fetch(wire.uid_fetch(self._client, str(uid), ["UID", "BODY.PEEK[]"]))
        data = by_uid.get(uid)
        return data.get(b"BODY[]") if data else None

    def count_uids(self, low: int, high: int) -> int:
        """Messages with a UID in ``low:high``; needs ESEARCH."""
        if high < low:
            return 0
        with self._errors("counting messages"):
            return wire.uid_esearch(self._client, max(low, 1), high, "COUNT") or 0

    def count_changed(self, modseq: int, low: int, high: int) -> int:
        """Messages in ``low:high`` changed since ``modseq`` (CONDSTORE ``MODSEQ`` search); needs ESEARCH."""
        with self._errors("counting changed messages"):
            return wire.uid_esearch(self._client, max(low, 1), high, "COUNT", ("MODSEQ", str(modseq + 1))) or 0

    def last_uid_below(self, high: int) -> int | None:
        """The highest UID in ``1:high``, or None; needs ESEARCH (jumps a gap going down)."""
        if high < 1:
            return None
        with self._errors("looking for the previous message"):
            return wire.uid_esearch(self._client, 1, high, "MAX")

    def first_uid(self, low: int, high: int) -> int | None:
        """The lowest UID in ``low:high``, or None; needs ESEARCH. Lets a walk jump a gap of
        expunged UIDs in one round trip instead of stepping through it window by window."""
        if high < low:
            return None
        with self._errors("looking for the next message"):
            found = wire.uid_esearch(self._client, max(low, 1), high, "MIN")
        return found if found is not None and low <= found <= high else None

    def fetch_metadata(self, uids: Sequence[int]) -> list[MessageMeta]:
        uids = sorted(set(uids))
        if not uids:
            return []
        with self._errors(f"fetching {len(uids)} message(s)"):
            return self._fetch_metadata(uids)

    def fetch_minimal(self, uid: int, reason: str) -> list[MessageMeta]:
        """Flags, size and date of one message whose full description cannot be had."""
        with self._errors(f"fetching message UID {uid}"):
            by_uid = wire.parse_fetch(wire.uid_fetch(self._client, str(uid), self._minimal_items))
        if uid not in by_uid:
            return []  # expunged meanwhile
        return [message_meta(uid, by_uid[uid], known_error=reason)]

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

    # -- sending: the Sent copy and the proof (providers/smtp/transport.py) --------

    def find_message_id(self, path: str, message_id: str) -> list[int]:
        """UIDs in ``path`` whose Message-ID header is ``message_id`` (selects it read-only)."""
        self.select(path)
        with self._errors(f"searching folder {path!r} for {message_id}"):
            found = self._client.search(["HEADER", "Message-ID", message_id])
        return sorted(found)

    def append(self, path: str, raw: bytes, flags=(b"\\Seen",)) -> int | None:
        """APPEND a message; its UID when the server names it (UIDPLUS ``APPENDUID``), else None."""
        with self._errors(f"adding a message to folder {path!r}"):
            answer = self._client.append(path, raw, flags=flags)
        match = re.search(rb"\[APPENDUID \d+ (\d+)\]", answer if isinstance(answer, bytes) else answer.encode())
        return int(match[1]) if match else None

    def delete_uids(self, path: str, uids: Sequence[int]) -> bool:
        """Expunge exactly these UIDs; only with UIDPLUS (a plain EXPUNGE would take others' \\Deleted too)."""
        if not uids or "UIDPLUS" not in self.capabilities:
            return False
        with self._errors(f"removing messages from folder {path!r}"):
            self._client.select_folder(path)  # read-write; the next select() is read-only again
            self._client.add_flags(list(uids), [b"\\Deleted"])
            self._client.uid_expunge(list(uids))
        return True

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
        except ServerError as error:
            if _desynchronised(error):
                # imaplib stopped reading mid-answer: whatever comes next on this
                # socket is the rest of it. The session ends here.
                self._broken = True
                raise AnswerTooLong(f"{error} The connection was closed; the next step opens a new one.") from error
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
        """The server's word that the folder does not exist, nothing less.

        RFC 5530 gives it a code, ``[NONEXISTENT]``; servers older than that
        say it in words (Dovecot 2.3: "Mailbox doesn't exist", Cyrus: "Mailbox
        does not exist", Courier: "Invalid mailbox name" is *not* one)."""
        text = str(error)
        return "[NONEXISTENT]" in text.upper() or bool(_DOES_NOT_EXIST.search(text))

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
        # A refusal may pass (the server under load, a message being written):
        # the row is asked for again later. An answer we cannot parse will not.
        refused = isinstance(error, ServerError)
        if refused:
            reason = f"the server refused to send this message's details ({error})"[:300]
        else:
            reason = f"the server's answer could not be parsed ({type(error).__name__}: {error})"[:300]
        _logger.warning("%s: message UID %s: %s; indexing flags and size only.", self._where, uid, reason)
        try:
            by_uid = wire.parse_fetch(wire.uid_fetch(self._client, str(uid), self._minimal_items))
        except (ServerError, *_UNPARSEABLE):
            return [MessageMeta(uid=uid, parse_error=reason, refetch=refused)]
        if uid not in by_uid:
            return []  # expunged meanwhile
        return [dataclasses.replace(message_meta(uid, by_uid[uid], known_error=reason), refetch=refused)]


_DOES_NOT_EXIST = re.compile(r"mailbox (doesn't|does not) exist|no such mailbox", re.IGNORECASE)


class AnswerTooLong(ServerError):
    """An answer broke imaplib's line limit: the session is over, and the request must be
    split (``ImapMailbox`` reopens the session and bisects a FETCH down to the message)."""


def _desynchronised(error: ServerError) -> bool:
    cause = error.__cause__
    return isinstance(cause, ProtocolError) or "got more than" in str(cause)  # imaplib's line limit


def _mailbox_id(value) -> str | None:
    """``[MAILBOXID (F2212)]`` (RFC 8474), as imaplib files it: ``[b'(F2212)']``."""
    if not value:
        return None
    text = value[0].decode("ascii", "replace") if isinstance(value[0], bytes) else str(value[0])
    return text.strip().strip("()").strip() or None


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
