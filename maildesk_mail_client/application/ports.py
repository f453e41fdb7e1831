"""What the engine needs from the outside world.

The use cases receive an :class:`EngineContext` and never build their own
I/O. Inside Odoo the stores run on ``env.cr``; in the engine tests they run
on a psycopg2 connection to a real PostgreSQL. Mail servers are reached
through :class:`Mailbox`, one adapter per provider in ``providers/``.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Iterable, Iterator, Sequence
from contextlib import AbstractContextManager
from typing import Protocol

from .domain import (
    AccountDelta,
    Delta,
    FlagUpdate,
    FolderOpened,
    FolderState,
    MessageMeta,
    RemoteFolder,
    SyncReport,
    UpsertResult,
)
from .sending import SentCopy, SentProof


class KnownRows(Protocol):
    """The live rows the index holds for one folder: by IMAP UID range, or every remote id."""

    def uids(self, low: int, high: int) -> set[int]: ...

    def count(self, low: int, high: int) -> int: ...

    def present(self, remote_ids) -> set[str]:
        """Which of these ids the index holds live in the folder (a page's worth, not the whole folder)."""

    def dates(self, remote_ids) -> dict[str, dt.datetime | None]:
        """{id: internal date} of the folder's live rows among these ids: where a listing stands (Gmail)."""

    # A full listing that spans several runs (Graph's delta from scratch) keeps what it listed here,
    # committed with each page, instead of in memory: the sweep at its end removes what is ``unlisted``.
    def remember_listed(self, remote_ids) -> None: ...

    def forget_listed(self, remote_ids=None) -> None:
        """These ids (removed later in the listing), or all of them (a listing starts over)."""

    def unlisted(self) -> set[str]:
        """The folder's live rows the listing did not name."""


class Mailbox(Protocol):
    """The provider port: one logged-in connection to one mailbox, whatever the protocol.

    Each provider (``providers/imap``, later Gmail and Graph) turns its
    protocol into the neutral values of ``domain``: folders, and for one
    folder a series of :class:`Delta` -- upserts, flag changes, removals and
    the cursors that are true once they are stored. Everything else (leases,
    checkpoints, error states, the walk's budget, the index, hooks, the
    notification) is the engine's and is shared by every provider.
    """

    provider: str  # "imap", "gmail", "outlook": part of every delivery key
    identity: str  # who this mailbox is on its server; a change means another mailbox
    #: A message id names one message in the whole mailbox, whatever its folder (Graph's
    #: ImmutableId): a message seen in a new folder is the indexed one moved, never a new one.
    moves_keep_ids: bool = False
    #: Flags belong to the message, not to its row in one folder (Gmail's UNREAD and STARRED labels):
    #: a Delta's FlagUpdates apply to every row of the message in the account.
    flags_per_message: bool = False

    def list_folders(self) -> list[RemoteFolder]: ...

    def confirm_gone(self, folder: FolderState) -> bool:
        """The folder is missing from a listing: True only if the server proves it is gone."""

    def same_folder(self, old: FolderState, new: RemoteFolder, sample: tuple[str, str | None] | None) -> bool:
        """Evidence that ``new`` is ``old`` renamed (providers without stable folder ids).
        ``sample`` is (remote id, Message-ID) of the newest message indexed in ``old``."""

    def open(self, folder: FolderState) -> FolderOpened:
        """Open the folder and compare it with its cursors. Raises FolderNotFound."""

    def older(self, folder: FolderState, limit: int, then: int | None = None) -> Delta:
        """Up to ``limit`` messages of the history below the folder's walk cursor, newest first.
        The cursor says ``backfill_state = done`` once the bottom is reached. ``then``: the size
        of the page the engine will ask for next, which the provider may fetch meanwhile."""

    def changes(self, folder: FolderState, known: KnownRows,
                reconcile: bool, settings: SyncSettings) -> Iterator[Delta]:
        """What changed since the folder's cursors, in steps the engine commits one by one.

        With ``reconcile`` (or when the provider has no cheaper way), the
        steps also compare the whole indexed range with the server, resuming
        at ``folder.reconcile_cursor``. ``known`` tells what the index holds
        of the folder, for providers that diff by id.
        """

    def fetch(self, folder: FolderState, remote_ids: Sequence[str]) -> list[MessageMeta]:
        """The metadata of these messages again (rows that were indexed incomplete)."""

    def fetch_raw(self, folder: FolderState, remote_id: str) -> bytes | None:
        """The message's full RFC 5322 bytes, without marking it read; None when it is gone."""

    def close(self) -> None: ...


class AccountFeed(Mailbox, Protocol):
    """A provider whose changes come per account, not per folder (Gmail's history).

    The engine checks for ``account_changes``. Folders then change only
    through the feed; ``changes(folder, ..., reconcile=True)`` is asked
    for only to compare one folder with the server by id, after the
    cursor expired.
    """

    def start_cursor(self) -> str:
        """The account cursor of now, taken before anything is listed (Gmail: getProfile's historyId)."""

    def account_changes(self, cursor: str, settings: SyncSettings) -> Iterator[AccountDelta]:
        """What changed since ``cursor``, in steps the engine commits one by one. Raises CursorExpired."""


class Transport(Protocol):
    """How one account sends (SMTP for IMAP accounts, Gmail's messages.send, Graph); see ``sending.py``.

    ``send`` returns when the server accepted the message, or raises
    SendRefused / SendDeferred / SendUncertain / AuthenticationFailed.
    """

    provider: str
    files_sent_copy: bool  # the server files its own Sent copy (Gmail, Graph); SMTP: we append it
    #: Every message the server accepted is where ``find_sent`` looks within ``proof_wait`` (Gmail files
    #: it in SENT as it accepts it; Graph's draft stays a draft until submitted). An absent copy then
    #: proves "not sent", even after a hand-over whose answer was lost. SMTP cannot promise that.
    proof_is_complete: bool = False

    def send(self, mime: bytes, envelope_from: str, recipients: Sequence[str]) -> SentCopy | None:
        """Hand the message over; the Sent copy when the server names it at once."""

    def find_sent(self, message_id: str) -> SentProof:
        """Proof: did an earlier attempt reach the server? Raises ProofUnavailable when it cannot tell."""

    def file_sent_copy(self, mime: bytes, message_id: str) -> SentCopy | None:
        """Put the message in the Sent folder unless it is there already (idempotent); where it is."""

    def close(self) -> None: ...


class MailboxFactory(Protocol):
    def __call__(self, account_id: int) -> Mailbox: ...


class FolderStore(Protocol):
    def list_for_account(self, account_id: int) -> list[FolderState]: ...

    def get(self, folder_id: int) -> FolderState | None: ...

    def insert(self, account_id: int, folder: RemoteFolder) -> FolderState: ...

    def update_remote(self, folder_id: int, folder: RemoteFolder) -> None:
        """A rename or a new role/selectable flag; cursors are kept."""

    def delete(self, folder_id: int) -> None:
        """The folder is gone on the server; its index rows go with it."""

    def park(self, folder_id: int) -> None:
        """Step aside from its path, so that folders can swap or chain paths in one discovery."""

    def save_cursors(self, state: FolderState, synced: bool = False) -> None:
        """``synced``: an incremental pass over the folder ended (it goes to the back of the queue)."""

    def touch(self, folder_id: int) -> None:
        """Visited by incremental sync with nothing to do (ordering of the next run)."""

    def record_error(self, folder_id: int, message: str) -> None:
        """The server refused something about this folder; shown to the admin."""

    def record_warning(self, folder_id: int, message: str) -> None:
        """Kept for the admin until the next warning (a failing add-on, a row the database refused)."""

    def record_missing(self, folder_id: int, runs: int) -> None:
        """The folder was missing from ``runs`` listings in a row (0: it is back)."""

    def claim_backfill(self, limit: int, exclude_accounts: Sequence[int] = (),
                       providers: Sequence[str] = ("imap",)) -> list[FolderState]:
        """Folders waiting for backfill, of accounts of ``providers``, locked FOR UPDATE SKIP LOCKED."""

    def count_backfill_pending(self, providers: Sequence[str] = ("imap",)) -> int: ...


class MessageIndexStore(Protocol):
    def upsert(self, account_id: int, folder_id: int, provider: str,
               messages: Sequence[MessageMeta], moves: bool = False) -> list[UpsertResult]:
        """Insert or update by delivery_key; returns only rows that changed.

        ``moves``: a message the account holds in another folder is that row
        moved here (same row id), for providers whose ids survive a move.
        """

    def folders_of(self, account_id: int, remote_ids: Iterable[str]) -> dict[str, set[int]]:
        """The folders where each of these messages has a live row."""

    def update_flags_everywhere(self, account_id: int, updates: Sequence[FlagUpdate]) -> list[tuple[int, UpsertResult]]:
        """Flags of a message in every folder it is in; returns (folder id, row) of rows that changed."""

    def update_flags(self, folder_id: int, updates: Sequence[FlagUpdate]) -> list[UpsertResult]:
        """Flags of rows that exist and differ; returns those rows."""

    def live_uids(self, folder_id: int, low: int = 1, high: int | None = None) -> set[int]: ...

    def count_live(self, folder_id: int, low: int = 1, high: int | None = None) -> int: ...

    def mark_deleted(self, folder_id: int, remote_ids: Iterable[str]) -> int: ...

    def purge_folder(self, folder_id: int) -> int: ...

    def live_among(self, folder_id: int, remote_ids: Iterable[str]) -> set[str]: ...

    def live_dates(self, folder_id: int, remote_ids: Iterable[str]) -> dict[str, dt.datetime | None]: ...

    def remember_listed(self, folder_id: int, remote_ids: Iterable[str]) -> None:
        """A full round listed these (kept in the database: a round may span runs)."""

    def forget_listed(self, folder_id: int, remote_ids: Iterable[str] | None = None) -> None: ...

    def unlisted(self, folder_id: int) -> set[str]:
        """Live rows of the folder the running full round has not listed."""

    def newest(self, folder_id: int) -> tuple[str, str | None] | None:
        """(remote id, Message-ID) of the folder's newest live row, as evidence of its identity."""

    def incomplete(self, folder_id: int, limit: int) -> list[str]:
        """Remote ids of rows indexed without their metadata that are worth asking for again."""

    def refetch_failed(self, folder_id: int, remote_ids: Sequence[str], max_attempts: int) -> None:
        """Asked again, still refused: count the attempt, and stop asking after ``max_attempts``."""


class LeaseStore(Protocol):
    def acquire(self, account_id: int, purpose: str, holder: str, ttl_seconds: int) -> bool: ...

    def renew(self, account_id: int, purpose: str, holder: str, ttl_seconds: int) -> bool:
        """False when the lease expired and another holder took it."""

    def release(self, account_id: int, purpose: str, holder: str) -> None: ...


class AccountStore(Protocol):
    def due_for_sync(self, provider: str, limit: int | None = None) -> list[int]: ...

    def due_for_bootstrap(self, provider: str, limit: int | None = None) -> list[int]: ...

    def mark_folders_synced(self, account_id: int) -> None: ...

    def folders_synced_at(self, account_id: int) -> dt.datetime | None:
        """When the folders were last listed (the database's clock, naive UTC)."""

    def edited_at(self, account_id: int) -> dt.datetime | None:
        """When the account was last saved through Odoo (the database's clock)."""

    def identity(self, account_id: int) -> str | None:
        """The mailbox identity the index was built from (None before the first run)."""

    def set_identity(self, account_id: int, identity: str) -> None: ...

    def feed_cursor(self, account_id: int) -> str | None:
        """An account-wide change cursor (Gmail's historyId); None before the first."""

    def save_feed_cursor(self, account_id: int, cursor: str | None, reset: bool = False) -> None:
        """Never moves the cursor backwards, unless ``reset`` (a fresh one after it expired)."""

    def record_success(self, account_id: int, when: dt.datetime) -> None: ...

    def record_failure(self, account_id: int, message: str, failures: int,
                       backoff_until: dt.datetime) -> None: ...

    def record_reconnect_needed(self, account_id: int, message: str, edited_at: dt.datetime | None) -> None:
        """Unless the account was saved again since ``edited_at`` (someone fixed it meanwhile)."""

    def failure_count(self, account_id: int) -> int: ...


class Hooks(Protocol):
    def after_upsert(self, account_id: int, folder_id: int, rows: Sequence[UpsertResult]) -> None:
        """Every row the engine inserted or changed in one step, in one call."""


class Notifier(Protocol):
    def index_changed(self, report: SyncReport) -> None: ...


class Scheduler(Protocol):
    def wake_bootstrap(self) -> None:
        """Run the bootstrap job soon (new folder, or a folder reset)."""


class Clock(Protocol):
    def now(self) -> dt.datetime:
        """Naive UTC, as Odoo stores datetimes."""

    def monotonic(self) -> float: ...


class Checkpoint(Protocol):
    def commit(self) -> None:
        """Make the work so far durable, so a crash resumes from here."""

    def rollback(self) -> None:
        """Drop what the failed step did, so its error can still be recorded."""

    def savepoint(self) -> AbstractContextManager:
        """A nested unit: an exception inside undoes only what it did, and propagates."""


@dataclasses.dataclass(frozen=True)
class SyncSettings:
    first_chunk: int = 50  # what the user sees within seconds of connecting
    chunk: int = 500  # one FETCH; bounds memory and the work lost to a crash
    bootstrap_limit: int = 1500  # per folder, newest first; backfill does the rest
    flag_scan_chunk: int = 5000  # UIDs per FETCH FLAGS of a reconciliation window
    search_window: int = 20000  # UIDs per UID SEARCH: an unbounded one can outgrow a server line
    reconcile_interval: int = 86400  # seconds between full reconciliations of a folder with CONDSTORE
    refetch_attempts: int = 5  # times a message the server refused is asked for again
    missing_listings: int = 3  # listings in a row without a folder before its rows are dropped
    folder_listing_interval: int = 600  # seconds; feed providers (Gmail) list folders no more often
    lease_ttl: int = 120  # seconds; renewed at every checkpoint, a dead worker's lease frees itself
    backoff_base: int = 60  # seconds after the first network failure
    backoff_cap: int = 3600


@dataclasses.dataclass
class EngineContext:
    folders: FolderStore
    index: MessageIndexStore
    leases: LeaseStore
    accounts: AccountStore
    mailboxes: MailboxFactory
    hooks: Hooks
    notifier: Notifier
    scheduler: Scheduler
    clock: Clock
    checkpoint: Checkpoint
    settings: SyncSettings = SyncSettings()
    holder: str = "engine"  # who holds leases: host:pid:uuid in production
    #: database errors that mean "another transaction got there first" (REPEATABLE
    #: READ snapshots, deadlocks): the work is retried later, nothing is wrong
    conflicts: tuple[type[BaseException], ...] = ()
    #: the providers ``mailboxes`` can open: other accounts are left alone
    providers: tuple[str, ...] = ("imap",)
    #: database errors one row can cause (a value a column or its index refuses):
    #: that row is stored without its details, the others are unaffected
    row_errors: tuple[type[BaseException], ...] = ()
