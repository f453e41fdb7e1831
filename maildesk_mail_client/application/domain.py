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
    """A folder as the server lists it.

    ``remote_id`` is what identifies the folder across renames: RFC 8474's
    MAILBOXID, a Gmail label id, a Graph folder id. An IMAP server without
    MAILBOXID has only the path, so there the path is the id.
    """

    path: str  # full name, decoded from modified UTF-7; the provider re-encodes it
    name: str  # last segment of the path, for display
    delimiter: str | None
    role: str = FolderRole.OTHER
    selectable: bool = True
    remote_id: str | None = None

    def __post_init__(self):
        if self.remote_id is None:
            object.__setattr__(self, "remote_id", self.path)


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


def _identify(message):
    """``remote_id`` defaults to the IMAP UID as text: every provider has a text id, IMAP's is the UID."""
    if message.remote_id is None:
        if message.uid is None:
            raise ValueError(f"{type(message).__name__} needs a remote_id or an IMAP uid")
        object.__setattr__(message, "remote_id", str(message.uid))


@dataclasses.dataclass(frozen=True)
class FlagUpdate:
    """The current flags of one message, as a flag scan or a provider's change feed gives them."""

    uid: int | None = None
    flags: Flags = Flags()
    modseq: int | None = None
    remote_id: str | None = None

    __post_init__ = _identify


@dataclasses.dataclass(frozen=True)
class MessageMeta:
    """Everything the index keeps about one message. No bodies.

    ``remote_id`` is the provider's id of the message in its folder (the
    IMAP UID as text, the Gmail message id, the Graph immutable id); IMAP
    rows also keep the number in ``uid`` for range work.

    ``parse_error`` is set when the server's answer for this message could
    not be decoded; the row is still indexed (so the id set stays exact)
    with whatever could be read. ``refetch`` says the server refused to
    answer rather than answered nonsense, so asking again later may heal it.
    """

    uid: int | None = None
    remote_id: str | None = None
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
    refetch: bool = False

    __post_init__ = _identify


@dataclasses.dataclass(frozen=True)
class Delta:
    """One step of a provider's sync of one folder, applied and committed as a unit.

    The neutral shape every provider's changes take: messages to upsert,
    flag changes, ids gone from the folder, and the folder cursors that are
    true once these are stored. The engine applies the changes, sets the
    cursors, and commits them together, so a crash between two deltas
    resumes after the first. ``reconciled`` says a full reconciliation of
    the folder ended with this delta.
    """

    upserts: tuple[MessageMeta, ...] = ()
    flags: tuple[FlagUpdate, ...] = ()
    removed: frozenset[str] = frozenset()
    cursor: dict = dataclasses.field(default_factory=dict)
    reconciled: bool = False
    #: Where the step's messages are in the whole account, for providers whose folders overlap
    #: (Gmail: a label walk also files each message in All Mail and its other labels).
    placements: tuple[Placement, ...] = ()


@dataclasses.dataclass(frozen=True)
class Placement:
    """Where one message is now: in exactly these folders (by folder ``remote_id``), no others.

    A provider whose folders overlap (Gmail labels) says so per message,
    from the message's current state: the engine upserts a row in each of
    these folders and marks the message's rows in every other folder of the
    account deleted. Being state, not events, it is safe to apply twice.
    """

    message: MessageMeta
    folders: frozenset[str]


@dataclasses.dataclass(frozen=True)
class AccountDelta:
    """One step of an account-wide change feed (Gmail history), applied and committed as a unit.

    ``flags`` are the message's flags wherever it appears (UNREAD and
    STARRED are per message in Gmail, not per label); ``removed`` are
    messages gone from the account; ``cursor`` is the account cursor that
    is true once this step is stored (None: the step moves no cursor).
    ``unknown_folders``: a placement names a folder the provider has not
    listed yet, so the engine lists folders again before applying it.
    """

    placements: tuple[Placement, ...] = ()
    flags: tuple[FlagUpdate, ...] = ()
    removed: frozenset[str] = frozenset()
    cursor: str | None = None
    unknown_folders: bool = False


@dataclasses.dataclass(frozen=True)
class FolderOpened:
    """What opening a folder told the engine.

    ``reset``: the folder's ids no longer mean what they meant (a new
    UIDVALIDITY), so its index must be dropped. ``unchanged``: nothing
    happened since the stored cursors, so there is nothing to do. ``pin``:
    the cursors of a first visit, "everything from the current top up is
    incremental sync's", so the walk down starts below it.
    """

    reset: bool = False
    unchanged: bool = False
    pin: dict = dataclasses.field(default_factory=dict)


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
    hook_failures: int = 0  # rows whose after-upsert hook raised (logged, and recorded on the folder)
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
    """A folder's life, driven by the use cases::

        new ──bootstrap: pin the top──▶ bootstrap ──bound reached or bottom hit──▶ incremental
         ▲                                                                              │
         └──────────── reset: the folder's ids changed meaning (UIDVALIDITY) ◀──────────┘

    Beside it runs ``BackfillState``: pending until the walk down reaches the
    oldest message, done after. Bootstrap walks down to the bound, backfill
    (a lower-priority cron) takes the rest once the folder is incremental.
    """

    NEW = "new"  # discovered, nothing indexed yet
    BOOTSTRAP = "bootstrap"  # newest-first fill up to the bound
    INCREMENTAL = "incremental"

    SELECTION = ((NEW, "New"), (BOOTSTRAP, "Loading newest"), (INCREMENTAL, "Incremental"))


class BackfillState:
    PENDING = "pending"
    DONE = "done"

    SELECTION = ((PENDING, "Pending"), (DONE, "Done"))


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
    remote_id: str | None = None
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
    sync_cursor: str | None = None  # a provider's change cursor (Graph deltaLink)
    backfill_cursor: str | None = None  # a provider's page cursor going back (page token, nextLink)
    reconcile_cursor: str | None = None  # where a running full reconciliation resumes; None: none running
    reconciled_at: dt.datetime | None = None
    missing_runs: int = 0  # listings in a row that did not show the folder

    @property
    def is_inbox(self) -> bool:
        return self.role == FolderRole.INBOX

    @property
    def walk_below(self) -> int:
        """The downward walk (bootstrap, backfill) takes UIDs under this one."""
        return self.low_uid or self.last_uid + 1

    def reset(self) -> None:
        """Forget every cursor: the folder starts over as if just discovered."""
        self.uidvalidity = self.uidnext = self.highest_modseq = self.server_exists = None
        self.last_uid = self.low_uid = self.bootstrap_indexed = 0
        self.sync_cursor = self.backfill_cursor = self.reconcile_cursor = None
        self.reconciled_at = None
        self.sync_state = FolderSyncState.NEW
        self.backfill_state = BackfillState.PENDING

    def advance(self, cursor: dict) -> None:
        """Take a provider's new cursors; only fields the provider may move."""
        for name, value in cursor.items():
            if name not in _PROVIDER_CURSORS:
                raise ValueError(f"a provider may not set {name!r} on a folder")
            setattr(self, name, value)


# The FolderState fields a provider's Delta or FolderOpened may set.
_PROVIDER_CURSORS = frozenset({
    "uidvalidity", "uidnext", "highest_modseq", "last_uid", "low_uid", "server_exists",
    "sync_cursor", "backfill_cursor", "reconcile_cursor", "backfill_state",
})


@dataclasses.dataclass(frozen=True)
class UpsertResult:
    remote_id: str
    uid: int | None
    index_id: int
    is_new: bool
