"""Plain values the engine passes around.

Nothing here knows about Odoo or a wire protocol: providers turn server
responses into these values, repositories turn them into rows.
"""

from __future__ import annotations

import dataclasses
import datetime as dt


class FolderRole:
    """Roles a folder can play, from SPECIAL-USE (RFC 6154) or the provider."""

    INBOX = "inbox"
    SENT = "sent"
    DRAFTS = "drafts"
    TRASH = "trash"
    JUNK = "junk"
    ARCHIVE = "archive"
    ALL = "all"
    FLAGGED = "flagged"
    OTHER = "other"

    ALL_ROLES = (INBOX, SENT, DRAFTS, TRASH, JUNK, ARCHIVE, ALL, FLAGGED, OTHER)

    @classmethod
    def sequence(cls, role):
        """Display order: INBOX first, then the other special folders, then the rest."""
        return cls.ALL_ROLES.index(role) if role in cls.ALL_ROLES else len(cls.ALL_ROLES)


@dataclasses.dataclass(frozen=True)
class RemoteFolder:
    """A folder as the server lists it."""

    path: str  # full name, decoded from modified UTF-7; the provider re-encodes it
    name: str  # last segment of the path, for display
    delimiter: str | None
    role: str = FolderRole.OTHER
    selectable: bool = True


@dataclasses.dataclass(frozen=True)
class FolderStatus:
    """What SELECT/EXAMINE tells about a folder."""

    uidvalidity: int
    uidnext: int
    exists: int
    highest_modseq: int | None = None  # None when the server has no CONDSTORE


@dataclasses.dataclass(frozen=True)
class Flags:
    seen: bool = False
    flagged: bool = False
    answered: bool = False
    draft: bool = False

    @classmethod
    def from_imap(cls, flags) -> Flags:
        names = {(f.decode() if isinstance(f, bytes) else str(f)).lower() for f in flags}
        return cls(
            seen="\\seen" in names,
            flagged="\\flagged" in names,
            answered="\\answered" in names,
            draft="\\draft" in names,
        )


@dataclasses.dataclass(frozen=True)
class FlagUpdate:
    """The current flags of one message, as a flag scan or CHANGEDSINCE returns them."""

    uid: int
    flags: Flags
    modseq: int | None = None


@dataclasses.dataclass(frozen=True)
class MessageMeta:
    """Everything the index keeps about one message. No bodies.

    ``parse_error`` is set when the server's answer for this message could
    not be decoded; the row is still indexed (so the UID set stays exact)
    with whatever could be read.
    """

    uid: int
    flags: Flags = Flags()
    modseq: int | None = None
    internal_date: dt.datetime | None = None  # naive UTC
    size: int = 0
    message_id: str | None = None
    in_reply_to: str | None = None
    references: str | None = None
    subject: str | None = None
    from_address: str | None = None
    to_addresses: str | None = None
    cc_addresses: str | None = None
    date: dt.datetime | None = None  # naive UTC, from the Date header
    has_attachments: bool = False
    snippet: str | None = None
    parse_error: str | None = None


@dataclasses.dataclass(frozen=True)
class ChangeSet:
    """Flag changes and removals since a checkpoint (CONDSTORE / QRESYNC)."""

    updates: tuple[FlagUpdate, ...] = ()
    vanished: frozenset[int] = frozenset()


@dataclasses.dataclass
class SyncReport:
    """What one sync run changed; drives the single bus notification."""

    account_id: int
    new: int = 0
    updated: int = 0
    removed: int = 0
    folders_changed: set[int] = dataclasses.field(default_factory=set)
    folders_reset: set[int] = dataclasses.field(default_factory=set)
    folders_failed: set[int] = dataclasses.field(default_factory=set)  # retried at the cron's cadence
    remaining: int = 0  # work units left for the next run (progress reporting)
    _committed: tuple = dataclasses.field(default=(0, 0, 0, frozenset(), frozenset()), repr=False)

    @property
    def changed(self) -> bool:
        return bool(self.new or self.updated or self.removed or self.folders_reset)

    def mark_committed(self) -> None:
        """What is counted so far is durable: a later rollback cannot take it back."""
        self._committed = (self.new, self.updated, self.removed, frozenset(self.folders_changed),
                           frozenset(self.folders_reset))

    def discard_uncommitted(self) -> None:
        """A rollback undid the work since the last commit: stop counting it."""
        new, updated, removed, changed, reset = self._committed
        self.new, self.updated, self.removed = new, updated, removed
        self.folders_changed, self.folders_reset = set(changed), set(reset)

    def as_payload(self) -> dict:
        return {
            "account_id": self.account_id,
            "new": self.new,
            "updated": self.updated,
            "removed": self.removed,
            "folder_ids": sorted(self.folders_changed | self.folders_reset),
        }


class FolderSyncState:
    NEW = "new"  # discovered, nothing indexed yet
    BOOTSTRAP = "bootstrap"  # newest-first fill up to the bound
    INCREMENTAL = "incremental"


class BackfillState:
    PENDING = "pending"
    DONE = "done"


@dataclasses.dataclass
class FolderState:
    """The engine's view of one ``maildesk.folder`` row: identity and cursors.

    Every UID from ``low_uid`` up is indexed; below it is history that
    bootstrap or backfill have not reached yet. The first visit sets
    ``low_uid`` to UIDNEXT (nothing below is indexed, nothing above exists),
    and the downward walk lowers it chunk by chunk. ``low_uid == 0`` only
    before that first visit. ``backfill_state == done`` once the bottom is
    reached.
    """

    id: int
    account_id: int
    path: str
    role: str = FolderRole.OTHER
    selectable: bool = True
    uidvalidity: int | None = None
    uidnext: int | None = None
    highest_modseq: int | None = None
    last_uid: int = 0
    low_uid: int = 0
    server_exists: int | None = None
    last_sync_at: dt.datetime | None = None
    sync_state: str = FolderSyncState.NEW
    backfill_state: str = BackfillState.PENDING
    bootstrap_indexed: int = 0

    @property
    def is_inbox(self) -> bool:
        return self.role == FolderRole.INBOX

    @property
    def walk_below(self) -> int:
        """The downward walk (bootstrap, backfill) takes UIDs under this one."""
        return self.low_uid or self.last_uid + 1


@dataclasses.dataclass(frozen=True)
class UpsertResult:
    uid: int
    index_id: int
    is_new: bool
