"""DESIGN §3 flow 4: the index rows that belong in Odoo go into ``mail.thread``.

Two steps, each its own cron, each safe when two workers run it at once:

``scan``
    walks the index rows indexed since the last scan (a high-water mark of
    index ids per account) and queues the ones Odoo wants: mail whose To or
    Cc names an Odoo alias, and replies whose In-Reply-To / References name
    a Message-ID Odoo *sent* (a ``mail.message`` of type email / comment
    with an author: something that went out, not an internal note or a
    tracking message). The user's own sent mail is never queued (rows of a
    Sent folder, or whose Message-ID the account also holds in its Sent
    folder: Gmail's All Mail). Queueing is ``ON CONFLICT DO NOTHING`` on
    (account, Message-ID), so a row seen twice, or the same message in
    three Gmail labels, is queued once. Aliased mail without a Message-ID
    is queued under a stable synthetic one (:func:`synthetic_message_id`),
    which the import writes into the message so Odoo stores it and a second
    import finds it.

    A mark by id is only right if no row below it can still appear: ids are
    taken from a sequence when a row is inserted, and commits may come in
    another order. So a scan first takes the last id handed out, then the
    oldest transaction id still to come, and waits (``settle_seconds``) until
    every transaction that was then *writing the index* has ended: every row
    up to that id is then committed or never will be, and the mark may pass
    it. Only writers of the index count (``IngestQueue.settled``): Odoo's
    cron runner holds a transaction open on the job's ``ir_cron`` row for
    the whole job, and waiting for every older transaction would wait for
    that one forever. A writer that stays open longer delays the scan to
    its next run; nothing is skipped. A row still being described (``needs_refetch``: a thin Graph
    delta row, a message the server refused) holds its account's mark until
    the repair fills it or gives up, so its To/Cc are read once known.

``import_pending``
    claims due queue rows (``FOR UPDATE SKIP LOCKED``, the attempt counted
    and committed before the work, so a worker that dies mid-import cannot
    loop forever), then for each: a Message-ID already in ``mail.message``
    is done; otherwise the raw message (from the body cache when it is
    there, else the provider's ``fetch_raw``) goes to the importer in a
    savepoint, under a lock on the Message-ID, so the same message queued by
    two accounts is imported once. A failure backs off (``backoff_base``
    doubling up to ``backoff_cap``) until ``max_attempts``, then stays
    ``failed`` with its reason for an administrator to requeue.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import email.utils
import logging
import re
import time
from collections.abc import Callable
from typing import Protocol

from ..ports import Checkpoint, Clock, MailboxFactory
from .account_run import backoff_delay
from .read_message import MessageGone, MessageLocation, _same_message

_logger = logging.getLogger(__name__)

#: Odoo's routing looks at the last 32 references (mail_thread.message_route); so do we.
MAX_REFERENCES = 32
_MSGID = re.compile(r"<[^<>]+>")
#: folders whose mail is not mail someone sent to Odoo
SKIPPED_ROLES = frozenset({"drafts", "junk", "trash", "sent"})
_SYNTHETIC = re.compile(r"^<maildesk-index-\d+-(\d+)@maildesk>$")


def synthetic_message_id(account_id: int, index_id: int) -> str:
    """The Message-ID queued for an index row that has none (stable: the same row gives the same id)."""
    return f"<maildesk-index-{account_id}-{index_id}@maildesk>"


def synthetic_index_id(message_id: str) -> int | None:
    match = _SYNTHETIC.match(message_id or "")
    return int(match[1]) if match else None


@dataclasses.dataclass(frozen=True)
class IngestSettings:
    scan_batch: int = 1000  # index rows read per statement
    settle_seconds: float = 5.0  # how long a scan waits for writers running when it started
    claim_batch: int = 20  # queue rows claimed per statement
    lease_seconds: int = 600  # a claimed row is retried after this if its worker died
    backoff_base: int = 60  # seconds before the first retry; doubles at each attempt
    backoff_cap: int = 3600


@dataclasses.dataclass(frozen=True)
class AliasBook:
    """The addresses Odoo routes, as ``mail.thread.message_route`` matches them."""

    full_names: frozenset[str] = frozenset()  # alias_full_name, lower-case: "jobs@example.com"
    local_names: frozenset[str] = frozenset()  # alias_name of aliases with alias_incoming_local
    allowed_domains: frozenset[str] | None = None  # mail.catchall.domain.allowed (+ alias domains), if set

    def names(self, addresses: str | None) -> bool:
        for _name, address in email.utils.getaddresses([addresses or ""]):
            address = address.strip().lower()
            local, at, domain = address.partition("@")
            if not at:
                continue
            if address in self.full_names:
                return True
            if local in self.local_names and (self.allowed_domains is None or domain in self.allowed_domains):
                return True
        return False


@dataclasses.dataclass(frozen=True)
class ScannedRow:
    id: int
    account_id: int
    message_id: str | None
    to_addresses: str | None
    cc_addresses: str | None
    in_reply_to: str | None
    references: str | None
    folder_role: str | None
    is_draft: bool
    deleted: bool
    incomplete: bool  # needs_refetch: its details may still change
    in_sent: bool = False  # the account holds this Message-ID in a Sent folder: the user's own mail

    def reference_ids(self) -> list[str]:
        # As Odoo: References if any, else In-Reply-To; "reply_to" ids are Odoo's own decoys.
        found = _MSGID.findall(self.references or self.in_reply_to or "")
        return [re.sub(r"[\r\n\t ]+", "", ref) for ref in found if "reply_to" not in ref][-MAX_REFERENCES:]


@dataclasses.dataclass(frozen=True)
class QueueItem:
    id: int
    account_id: int
    index_id: int | None
    message_id: str
    attempts: int  # this attempt included
    max_attempts: int


class IngestQueue(Protocol):
    """repositories/ingest_queue.py::IngestQueueRepository."""

    def begin(self) -> None: ...
    def try_lock_scan(self) -> bool: ...
    def last_index_id(self) -> int: ...
    def xid_horizon(self) -> int: ...
    def settled(self, xid: int) -> bool: ...
    def scan_marks(self) -> dict[int, int]: ...
    def scan_rows(self, after: int, upto: int, limit: int) -> list[ScannedRow]: ...
    def known_message_ids(self, ids: list[str]) -> set[str]: ...
    def sent_message_ids(self, ids: list[str]) -> set[str]: ...
    def enqueue(self, rows: list[tuple[int, int, str]], now: dt.datetime) -> int: ...
    def save_marks(self, marks: dict[int, int]) -> None: ...
    def claim(self, now: dt.datetime, lease_until: dt.datetime, limit: int) -> list[QueueItem]: ...
    def lock_message(self, message_id: str) -> None: ...
    def existing_message(self, message_id: str) -> int | None: ...
    def locate(self, item: QueueItem) -> MessageLocation | None: ...
    def cached_raw(self, index_id: int, now: dt.datetime) -> bytes | None: ...
    def done(self, item_id: int, mail_message_id: int | None, now: dt.datetime) -> None: ...
    def retry(self, item_id: int, error: str, at: dt.datetime, now: dt.datetime) -> None: ...
    def fail(self, item_id: int, error: str, now: dt.datetime) -> None: ...


class Importer(Protocol):
    def process(self, raw: bytes, message_id: str) -> int | None:
        """Hand ``raw`` to Odoo's mail gateway; the ``mail.message`` id it made, if any.
        Raises when Odoo refuses it (no route, a record that cannot be created...)."""


@dataclasses.dataclass
class IngestPorts:
    queue: IngestQueue
    aliases: Callable[[], AliasBook]
    mailboxes: MailboxFactory
    importer: Importer
    checkpoint: Checkpoint
    clock: Clock
    settings: IngestSettings = IngestSettings()
    sleep: Callable[[float], None] = time.sleep


@dataclasses.dataclass
class ScanReport:
    scanned: int = 0
    queued: int = 0
    busy: bool = False  # another worker is scanning
    unsettled: bool = False  # a writer outlived settle_seconds: the rest waits for the next run
    remaining: bool = False  # stopped at the deadline with rows left


@dataclasses.dataclass
class ImportReport:
    imported: int = 0
    already: int = 0  # the Message-ID was in Odoo already
    retried: int = 0
    failed: int = 0
    remaining: bool = False

    @property
    def handled(self):
        return self.imported + self.already + self.retried + self.failed


# -- scan -------------------------------------------------------------------------------


def wanted(row: ScannedRow, book: AliasBook, known: set[str], sent: set[str] | None = None) -> bool:
    """Does Odoo want this row? ``known``: the Message-IDs of the batch that Odoo has; ``sent``: those
    of them Odoo sent (a reply to one of those belongs in its thread). ``sent`` None: ``known``."""
    if row.deleted or row.is_draft or row.folder_role in SKIPPED_ROLES or row.in_sent:
        return False
    if row.message_id and row.message_id in known:
        return False  # Odoo has this very message (its own notification, or already imported)
    if book.names(row.to_addresses) or book.names(row.cc_addresses):
        return True
    if not row.message_id:
        return False  # a reply without a Message-ID: Odoo's routing could not thread it either
    sent = known if sent is None else sent
    return any(ref in sent for ref in row.reference_ids())


def scan(ports: IngestPorts, deadline: float) -> ScanReport:
    report = ScanReport()
    queue, settings, clock = ports.queue, ports.settings, ports.clock
    ports.checkpoint.commit()
    queue.begin()
    if not queue.try_lock_scan():
        report.busy = True
        return report
    # The last id handed out, then (a moment later, see the module's docstring) the
    # transactions still to come: a writer that took an id up to ``limit`` has its
    # transaction id below ``horizon`` by then.
    limit = queue.last_index_id()
    ports.sleep(0.05)
    horizon = queue.xid_horizon()
    settle_until = min(deadline, clock.monotonic() + settings.settle_seconds)
    while not queue.settled(horizon):
        if clock.monotonic() > settle_until:
            report.unsettled = True
            ports.checkpoint.commit()
            return report
        ports.sleep(0.05)
    book = ports.aliases()
    marks = queue.scan_marks()  # account -> every row of it up to this id is scanned
    held = {}  # account -> the mark its first incomplete row holds it at, for this run
    start = min(marks.values(), default=limit)
    while start < limit:
        rows = queue.scan_rows(start, limit, settings.scan_batch)
        end = rows[-1].id if len(rows) == settings.scan_batch else limit
        refs = {ref for row in rows for ref in (row.message_id, *row.reference_ids()) if ref}
        known = queue.known_message_ids(sorted(refs))
        sent = queue.sent_message_ids(sorted(known)) if known else set()
        picked = []
        for row in rows:
            if row.account_id not in marks or row.id <= marks[row.account_id]:
                continue
            report.scanned += 1
            if row.incomplete:
                held.setdefault(row.account_id, row.id - 1)
            if wanted(row, book, known, sent):
                picked.append((row.account_id, row.id,
                               row.message_id or synthetic_message_id(row.account_id, row.id)))
        report.queued += queue.enqueue(picked, clock.now())
        queue.save_marks({account: max(mark, min(end, held.get(account, end))) for account, mark in marks.items()})
        # Each batch is committed with its marks; the scan lock goes with the commit, so take it again.
        ports.checkpoint.commit()
        start = end
        if start >= limit:
            break
        if clock.monotonic() > deadline:
            report.remaining = True
            break
        queue.begin()
        if not queue.try_lock_scan():
            report.busy = True
            break
    ports.checkpoint.commit()
    return report


# -- import -----------------------------------------------------------------------------


def backoff(settings: IngestSettings, attempts: int) -> dt.timedelta:
    return dt.timedelta(seconds=backoff_delay(settings, attempts))


def import_pending(ports: IngestPorts, deadline: float) -> ImportReport:
    report = ImportReport()
    queue, settings = ports.queue, ports.settings
    mailboxes = {}
    try:
        while True:
            if ports.clock.monotonic() > deadline:
                report.remaining = True
                break
            ports.checkpoint.commit()
            queue.begin()
            now = ports.clock.now()
            items = queue.claim(now, now + dt.timedelta(seconds=settings.lease_seconds), settings.claim_batch)
            # The claim is durable before any work: another worker will not take these rows.
            ports.checkpoint.commit()
            if not items:
                break
            for item in items:
                _import_one(ports, item, mailboxes, report)
    finally:
        for mailbox in mailboxes.values():
            _close(mailbox)
    return report


def _close(mailbox):
    try:
        mailbox.close()
    except Exception:  # closing a broken connection must not hide the report
        _logger.debug("closing a mailbox failed", exc_info=True)


def _import_one(ports, item, mailboxes, report):
    queue = ports.queue
    queue.begin()
    try:
        existing = queue.existing_message(item.message_id)
        if existing is None:
            raw = _with_message_id(_raw(ports, item, mailboxes), item.message_id)
            # The lock, then a fresh look: the same message queued by another account may
            # have been imported by another worker meanwhile (READ COMMITTED sees it).
            queue.lock_message(item.message_id)
            existing = queue.existing_message(item.message_id)
            if existing is None:
                with ports.checkpoint.savepoint():
                    made = ports.importer.process(raw, item.message_id)
                queue.done(item.id, made or queue.existing_message(item.message_id), ports.clock.now())
                ports.checkpoint.commit()
                report.imported += 1
                return
        queue.done(item.id, existing, ports.clock.now())
        ports.checkpoint.commit()
        report.already += 1
    except Exception as error:  # whatever one message does wrong is that message's, not the run's
        ports.checkpoint.rollback()
        reason = _reason(error)
        now = ports.clock.now()
        queue.begin()
        if item.attempts >= item.max_attempts:
            _logger.warning("MailDesk: ingest of %s failed for good: %s", item.message_id, reason)
            queue.fail(item.id, reason, now)
            report.failed += 1
        else:
            _logger.info("MailDesk: ingest of %s failed (attempt %s): %s", item.message_id, item.attempts, reason)
            queue.retry(item.id, reason, now + backoff(ports.settings, item.attempts), now)
            report.retried += 1
        ports.checkpoint.commit()
        if item.account_id in mailboxes and getattr(error, "transient", False):
            # A broken connection: the next message of this account opens a new one.
            _close(mailboxes.pop(item.account_id))


def _raw(ports, item, mailboxes) -> bytes:
    queue = ports.queue
    location = queue.locate(item)
    if location is None:
        raise MessageGone("The message is no longer in the index: it was deleted from its mailbox.")
    raw = queue.cached_raw(location.index_id, ports.clock.now())
    if raw is not None:
        return raw
    if location.deleted_on_server:
        raise MessageGone("The message is no longer on the server; it was moved or deleted.")
    mailbox = mailboxes.get(location.account_id)
    if mailbox is None:
        mailbox = mailboxes[location.account_id] = ports.mailboxes(location.account_id)
    raw = mailbox.fetch_raw(location.folder, location.remote_id)
    if raw is None:
        raise MessageGone("The message is no longer on the server; it was moved or deleted.")
    raw = bytes(raw)
    if not _same_message(location.message_id, raw):
        raise MessageGone("The message changed on the server since it was indexed; it will be indexed again "
                          "at the next sync.")
    return raw


def _with_message_id(raw: bytes, message_id: str) -> bytes:
    """A message queued under a synthetic Message-ID carries it, so Odoo stores it (a later import finds it)."""
    if synthetic_index_id(message_id) is None:
        return raw
    head = raw.split(b"\r\n\r\n", 1)[0].split(b"\n\n", 1)[0]
    if re.search(rb"(?im)^message-id:[ \t]*\S", head):
        return raw
    newline = b"\r\n" if b"\r\n" in head or not head else b"\n"
    return b"Message-ID: " + message_id.encode("ascii") + newline + raw


def _reason(error: Exception) -> str:
    text = str(error).strip() or type(error).__name__
    return text[:2000]
