"""What the engine needs from the outside world.

The use cases receive an :class:`EngineContext` and never build their own
I/O. Inside Odoo the stores run on ``env.cr``; in the engine tests they run
on a psycopg2 connection to a real PostgreSQL. Mail servers are reached
through :class:`ImapSession`, implemented in ``providers/imap``.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Iterable, Sequence
from typing import Protocol

from .domain import (
    ChangeSet,
    FlagUpdate,
    FolderState,
    FolderStatus,
    MessageMeta,
    RemoteFolder,
    SyncReport,
    UpsertResult,
)


class ImapSession(Protocol):
    """One authenticated IMAP connection. Folder methods act on the selected folder."""

    capabilities: frozenset[str]

    def list_folders(self) -> list[RemoteFolder]: ...

    def select(self, path: str) -> FolderStatus:
        """EXAMINE ``path`` (read-only). Raises FolderNotFound when it is gone."""

    def search_uids(self, low: int = 1, high: int | None = None) -> list[int]:
        """UIDs present in ``low:high`` (``high=None`` means ``*``), ascending."""

    def fetch_metadata(self, uids: Sequence[int]) -> list[MessageMeta]:
        """One FETCH for ``uids``. A message that cannot be decoded comes back
        with ``parse_error`` set; it never makes the whole chunk fail."""

    def fetch_flags(self, low: int, high: int) -> list[FlagUpdate]:
        """Flags of every message with a UID in ``low:high``."""

    def fetch_changes_since(self, modseq: int, low: int, high: int) -> ChangeSet:
        """CONDSTORE ``CHANGEDSINCE``; with QRESYNC also the VANISHED UIDs."""

    def close(self) -> None: ...


class SessionFactory(Protocol):
    def __call__(self, account_id: int) -> ImapSession: ...


class FolderStore(Protocol):
    def list_for_account(self, account_id: int) -> list[FolderState]: ...

    def get(self, folder_id: int) -> FolderState: ...

    def insert(self, account_id: int, folder: RemoteFolder) -> FolderState: ...

    def update_remote(self, folder_id: int, folder: RemoteFolder) -> None:
        """A rename or a new role/selectable flag; cursors are kept."""

    def delete(self, folder_id: int) -> None:
        """The folder is gone on the server; its index rows go with it."""

    def save_cursors(self, state: FolderState) -> None: ...

    def touch(self, folder_id: int) -> None:
        """Visited with nothing to do (ordering of the next run)."""

    def record_error(self, folder_id: int, message: str) -> None:
        """The server refused something about this folder; shown to the admin."""

    def claim_backfill(self, limit: int, exclude_accounts: Sequence[int] = ()) -> list[FolderState]:
        """Folders waiting for backfill, locked FOR UPDATE SKIP LOCKED."""

    def count_backfill_pending(self) -> int: ...


class MessageIndexStore(Protocol):
    def upsert(self, account_id: int, folder_id: int, provider: str,
               messages: Sequence[MessageMeta]) -> list[UpsertResult]:
        """Insert or update by delivery_key; returns only rows that changed."""

    def update_flags(self, folder_id: int, updates: Sequence[FlagUpdate]) -> list[UpsertResult]:
        """Flags of rows that exist and differ; returns those rows."""

    def live_uids(self, folder_id: int, low: int = 1, high: int | None = None) -> set[int]: ...

    def mark_deleted(self, folder_id: int, uids: Iterable[int]) -> int: ...

    def purge_folder(self, folder_id: int) -> int: ...


class LeaseStore(Protocol):
    def acquire(self, account_id: int, purpose: str, holder: str, ttl_seconds: int) -> bool: ...

    def renew(self, account_id: int, purpose: str, holder: str, ttl_seconds: int) -> bool:
        """False when the lease expired and another holder took it."""

    def release(self, account_id: int, purpose: str, holder: str) -> None: ...


class AccountStore(Protocol):
    def due_for_sync(self, provider: str, limit: int | None = None) -> list[int]: ...

    def due_for_bootstrap(self, provider: str, limit: int | None = None) -> list[int]: ...

    def mark_folders_synced(self, account_id: int) -> None: ...

    def record_success(self, account_id: int, when: dt.datetime) -> None: ...

    def record_failure(self, account_id: int, message: str, failures: int,
                       backoff_until: dt.datetime) -> None: ...

    def record_reconnect_needed(self, account_id: int, message: str, since: dt.datetime) -> None:
        """Unless the account was edited after ``since``."""

    def failure_count(self, account_id: int) -> int: ...


class Hooks(Protocol):
    def after_upsert(self, account_id: int, folder_id: int, uid: int,
                     index_id: int, is_new: bool) -> None: ...


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


@dataclasses.dataclass(frozen=True)
class SyncSettings:
    first_chunk: int = 50  # what the user sees within seconds of connecting
    chunk: int = 500  # one FETCH; bounds memory and the work lost to a crash
    bootstrap_limit: int = 1500  # per folder, newest first; backfill does the rest
    flag_scan_chunk: int = 5000  # UIDs per FETCH FLAGS when there is no CONDSTORE
    lease_ttl: int = 300  # seconds; a dead worker's lease frees itself after this
    backoff_base: int = 60  # seconds after the first network failure
    backoff_cap: int = 3600


@dataclasses.dataclass
class EngineContext:
    folders: FolderStore
    index: MessageIndexStore
    leases: LeaseStore
    accounts: AccountStore
    sessions: SessionFactory
    hooks: Hooks
    notifier: Notifier
    scheduler: Scheduler
    clock: Clock
    checkpoint: Checkpoint
    settings: SyncSettings = SyncSettings()
    holder: str = "engine"  # who holds leases: host:pid:uuid in production
