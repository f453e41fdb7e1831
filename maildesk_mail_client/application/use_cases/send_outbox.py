"""Send an account's outbox: never lost, never twice (DESIGN §3 "Send").

The states of a row, and who moves it::

    draft --Send--> queued --claim (committed)--> sending --accepted--> sent (--filed--> sent, filed)
      ^               |  ^                          |  |  |
      +----Undo-------+  +---temporary, backoff-----+  |  +--refused / auth lost / gave up--> failed
                                                       |                                      |
                               answer lost or crash:   +--stays sending until the proof ------+ (unknown)
                                                                                  Retry --> queued

Rules that make "never twice" hold:

- ``sending`` and the attempt count are committed *before* the transport
  is called, so a crash leaves the row in ``sending``, never ``queued``.
- Only the account's ``send`` lease holder touches its rows, so a row
  found in ``sending`` by the holder is one a dead sender left (or whose
  answer was lost: ``SendUncertain``). Before anything else, the holder
  asks the transport for the proof (``find_sent``): found → ``sent``;
  not found once the evidence had ``proof_wait`` seconds to appear → sent
  again, but only when the earlier attempt provably did not hand the whole
  message over (``handed_over`` false: the transport marks, committed, the
  moment it starts the hand-over, and a lost answer sets it), or when the
  provider files everything it accepts where the proof looks
  (``proof_is_complete``: Gmail, Graph). Otherwise, or
  with no way to tell (``ProofUnavailable``) → ``failed`` with failure
  kind ``unknown`` and a message asking the user to check, then Retry or
  Discard. It is never sent again blindly.
- The lease is renewed by a heartbeat all along the transport call, so a
  send slower than the lease (many recipients on a slow server) is never
  taken over and sent again by a second worker.
- Only errors that say "nothing was sent" (``SendDeferred``,
  ``ConnectionFailed`` before the message went out) allow a plain retry;
  anything unexpected after the transport was called is treated as
  "maybe sent" and goes through the proof.
- ``sent`` is committed as soon as the server accepted; filing and
  indexing the Sent copy come after, and are redone if a crash interrupts
  them (idempotent: the copy is looked up by Message-ID first).
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import logging
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

from ..domain import SyncReport
from ..errors import AuthenticationFailed, ConnectionFailed, MailboxError
from ..outgoing_mime import sent_meta
from ..sending import ProofUnavailable, SendDeferred, SendRefused, SendSettings, SendUncertain
from .account_run import backoff_delay

_logger = logging.getLogger(__name__)

SEND_LEASE = "send"
ARCHIVED_MESSAGE = ("The account this message was to be sent from is archived (or was removed from "
                    "MailDesk), so it was not sent. Choose another account and send it again, or Discard.")
UNCERTAIN_MESSAGE = ("The server may have accepted this message before the connection broke; check the "
                     "recipient or your Sent folder, then Retry or Discard.")


@dataclasses.dataclass
class SendPorts:
    outbox: Any  # repositories/outbox.py::OutboxRepository
    folders: Any  # FolderStore
    index: Any  # MessageIndexStore
    leases: Any  # LeaseStore
    transports: Callable[[int], Any]  # account id -> Transport
    checkpoint: Any  # Checkpoint
    clock: Any  # Clock
    notifier: Any = None  # Notifier: the Sent list shows the copy at once
    settings: SendSettings = SendSettings()
    holder: str = "sender"
    conflicts: tuple[type[BaseException], ...] = ()
    providers: Sequence[str] = ("imap", "gmail", "outlook")
    #: test seam: called with a step name at each point a crash matters ("claimed", "accepted", "recorded",
    #: "filed"); production leaves it None
    step: Callable[[str, int], None] | None = None


@dataclasses.dataclass
class SendReport:
    account_id: int
    sent: int = 0
    proven: int = 0  # rows found sent by the proof after a crash or a lost answer
    deferred: int = 0
    failed: int = 0
    awaiting_proof: int = 0
    remaining: int = 0  # rows still due when the run stopped (deadline, batch)
    folders_changed: set[int] = dataclasses.field(default_factory=set)


class _StopAccount(Exception):
    """The account cannot send now (server down, login refused): leave its other rows for later."""


class _LeaseLost(Exception):
    pass


def send_due(ports: SendPorts, deadline: float) -> tuple[int, int]:
    """Every account with due rows, until ``deadline``. Returns (accounts done, accounts left)."""
    ports.checkpoint.commit()
    ports.outbox.fail_inactive(ports.clock.now(), ARCHIVED_MESSAGE)
    accounts = ports.outbox.due_accounts(ports.clock.now(), ports.providers, ports.settings.own_copy_window)
    ports.checkpoint.commit()
    done = left = 0
    for position, account_id in enumerate(accounts):
        if time.monotonic() >= deadline:
            left += len(accounts) - position
            break
        try:
            report = send_account(ports, account_id, deadline)
        except Exception:  # one account's surprise is that account's: the others still send
            _logger.exception("Account %s: the sender run failed unexpectedly.", account_id)
            ports.checkpoint.rollback()
            report = None
        done += 1
        if report is not None and report.remaining:
            left += 1
    return done, left


def send_account(ports: SendPorts, account_id: int, deadline: float) -> SendReport | None:
    """Send what is due for one account under its ``send`` lease. None when another sender has it."""
    try:
        if not ports.leases.acquire(account_id, SEND_LEASE, ports.holder, ports.settings.lease_ttl):
            return None
    except ports.conflicts:
        return None
    report = SendReport(account_id=account_id)
    sender = _Sender(ports, account_id, report)
    try:
        sender.run(deadline)
    except _LeaseLost:
        _logger.warning("Account %s: send lease lost mid-run; the new holder carries on.", account_id)
        ports.checkpoint.rollback()
    finally:
        sender.close()
        ports.leases.release(account_id, SEND_LEASE, ports.holder)
    if report.folders_changed and ports.notifier is not None:
        ports.notifier.index_changed(SyncReport(account_id=account_id, new=report.sent + report.proven,
                                                folders_changed=set(report.folders_changed)))
        ports.checkpoint.commit()
    return report


class _Sender:
    def __init__(self, ports, account_id, report):
        self.ports = ports
        self.account_id = account_id
        self.report = report
        self.settings = ports.settings
        self._transport = None
        #: one user of the database connection at a time: the lease heartbeat and the hand-over mark
        #: both run while the main thread is inside a transport call
        self._db = threading.Lock()

    # -- plumbing -----------------------------------------------------------------

    def transport(self):
        if self._transport is None:
            self._transport = self.ports.transports(self.account_id)
        return self._transport

    def close(self):
        if self._transport is not None:
            try:
                self._transport.close()
            except Exception:  # closing a broken connection must not hide what was recorded
                _logger.debug("Closing the transport of account %s failed.", self.account_id, exc_info=True)

    def now(self):
        return self.ports.clock.now()

    def commit(self):
        self.ports.checkpoint.commit()

    def keep_lease(self):
        if not self.ports.leases.renew(self.account_id, SEND_LEASE, self.ports.holder, self.settings.lease_ttl):
            raise _LeaseLost()

    def step(self, name, row):
        if self.ports.step is not None:
            self.ports.step(name, row.id)

    # -- the run ------------------------------------------------------------------

    def run(self, deadline):
        self.commit()  # a fresh snapshot: rows committed by Send a moment ago are visible
        try:
            for row in self.ports.outbox.in_flight(self.account_id, self.now()):
                self.commit()
                self.resolve_or_fail(row)
            for row in self.ports.outbox.unfiled(self.account_id, self.now()):
                self.commit()
                self.file(row, None)
            self.commit()
            self.tidy_own_copies()
            sent = 0
            while True:
                if time.monotonic() >= deadline or sent >= self.settings.batch:
                    self.report.remaining += 1
                    return
                row = self.claim()
                if row is None:
                    return
                self.attempt(row)
                sent += 1
        except _StopAccount:
            self.commit()

    def claim(self):
        """The next due row, ``sending`` and committed; None when there is none."""
        self.keep_lease()
        for _try in range(3):
            try:
                row = self.ports.outbox.claim_next(self.account_id, self.now())
                self.commit()
                return row
            except self.ports.conflicts:
                # An undo or an edit changed the row after our snapshot: look again in a fresh one.
                self.ports.checkpoint.rollback()
        return None

    def attempt(self, row):
        self.step("claimed", row)
        try:
            self.keep_lease()
            transport = self.transport()
            with self.heartbeat(), self.handover_mark(transport, row):
                copy = transport.send(row.mime, row.envelope_from, row.recipients)
        except _LeaseLost:
            raise
        except SendUncertain as error:
            self.await_proof(row, str(error), handed_over=True)
            return
        except SendRefused as error:
            self.fail(row, str(error), "permanent")
            return
        except AuthenticationFailed as error:
            # Every further attempt is another refused login, and servers lock mailboxes for those.
            self.fail(row, str(error), "permanent")
            self.report.failed += self.ports.outbox.fail_queued(self.account_id, self.now(), str(error), "permanent")
            self.commit()
            raise _StopAccount() from error
        except SendDeferred as error:
            self.defer(row, str(error), getattr(error, "retry_after", None))
            return
        except ConnectionFailed as error:
            self.defer(row, str(error))
            raise _StopAccount() from error
        except MailboxError as error:
            if error.transient:
                self.defer(row, str(error))
                raise _StopAccount() from error
            self.fail(row, str(error), "permanent")  # e.g. no SMTP server configured
            raise _StopAccount() from error
        except Exception as error:
            # Unknown ground: the message may have gone out. Never resend without the proof.
            _logger.exception("Account %s: sending outbox row %s failed unexpectedly.", self.account_id, row.id)
            self.await_proof(row, f"Unexpected error while sending: {error!r}", handed_over=True)
            return
        self.step("accepted", row)
        self.record_sent(row, copy)

    @contextlib.contextmanager
    def heartbeat(self):
        """Renew the lease while the transport works: no second worker may think this one dead."""
        stop = threading.Event()
        interval = max(0.2, self.settings.lease_ttl / 3)

        def beat():
            while not stop.wait(interval):
                try:
                    with self._db:
                        if not self.ports.leases.renew(self.account_id, SEND_LEASE, self.ports.holder,
                                                       self.settings.lease_ttl):
                            _logger.warning("Account %s: the send lease was lost during a send.", self.account_id)
                            return
                except Exception:  # the next beat tries again; the send itself must go on
                    _logger.warning("Account %s: renewing the send lease failed.", self.account_id, exc_info=True)

        thread = threading.Thread(target=beat, name=f"maildesk-send-lease-{self.account_id}", daemon=True)
        thread.start()
        try:
            yield
        finally:
            stop.set()
            thread.join()

    @contextlib.contextmanager
    def handover_mark(self, transport, row):
        """A transport that can say when it starts handing the whole message over (SMTP: just before the
        DATA payload) gets a hook that commits ``handed_over``: a crash after it is "maybe sent"."""
        if not hasattr(transport, "handover_hook"):
            yield
            return

        def mark():
            with self._db:
                self.ports.outbox.mark_handover(row.id, self.now())
                self.commit()

        transport.handover_hook = mark
        try:
            yield
        finally:
            transport.handover_hook = None

    def record_sent(self, row, copy, proven=False):
        self.ports.outbox.mark_sent(row.id, self.now(), copy.remote_id if copy else None)
        self.commit()
        if proven:
            self.report.proven += 1
        else:
            self.report.sent += 1
        _logger.info("Account %s: outbox row %s %s (%s).", self.account_id, row.id,
                     "proven sent" if proven else "sent", row.message_id)
        self.step("recorded", row)
        self.file(row, copy)

    def file(self, row, copy):
        """The Sent copy: filed by us (SMTP) unless the server did, then indexed at once."""
        try:
            transport = self.transport()
            if copy is None:
                copy = transport.file_sent_copy(row.mime, row.message_id)
            self.step("filed", row)
            if copy is not None:
                self.index_copy(row, copy)
            pending = not self.remove_own_copy(row)
            self.ports.outbox.mark_filed(row.id, self.now(), copy.remote_id if copy else None,
                                         self.own_copy_retry_at() if pending else None)
            self.commit()
        except _LeaseLost:
            raise
        except Exception as error:  # the message is sent: a missing Sent copy is retried, never fatal
            self.ports.checkpoint.rollback()
            _logger.warning("Account %s: the Sent copy of outbox row %s could not be filed: %s",
                            self.account_id, row.id, error)
            retry = self.now() + dt.timedelta(seconds=self.settings.backoff_base)
            self.ports.outbox.filing_failed(row.id, self.now(), retry,
                                            f"Sent, but the copy could not be put in the Sent folder: {error}")
            self.commit()

    def remove_own_copy(self, row):
        """True once the own copy (SMTP's proof) is out of INBOX, or was never there to remove."""
        transport = self.transport()
        if not hasattr(transport, "remove_own_copy"):
            return True
        try:
            return transport.remove_own_copy(row.mime, row.message_id)
        except MailboxError as error:  # a stray own copy is untidy, not wrong: look again later
            _logger.info("Account %s: the own copy of outbox row %s stays for now: %s", self.account_id, row.id,
                         error)
            return False

    def own_copy_retry_at(self):
        return self.now() + dt.timedelta(seconds=self.settings.own_copy_retry)

    def tidy_own_copies(self):
        """Own copies that reached INBOX after their Sent copy was filed: removed on a later run."""
        for row in self.ports.outbox.own_copies_pending(self.account_id, self.now(), self.settings.own_copy_window):
            done = self.remove_own_copy(row)
            self.ports.outbox.own_copy_done(row.id, self.now(), None if done else self.own_copy_retry_at())
            self.commit()
        self.commit()

    def index_copy(self, row, copy):
        folders = [folder for folder in self.ports.folders.list_for_account(self.account_id)
                   if folder.remote_id in copy.folders or folder.path in copy.folders]
        provider = self.transport().provider
        meta = sent_meta(row.mime, copy.remote_id, uid=copy.uid, now=self.now())
        for folder in folders:
            self.ports.index.upsert(self.account_id, folder.id, provider, [meta],
                                    moves=getattr(self.transport(), "moves_keep_ids", False))
            self.report.folders_changed.add(folder.id)

    # -- a row left in sending ----------------------------------------------------

    def resolve_or_fail(self, row):
        try:
            self.resolve(row)
        except (_LeaseLost, _StopAccount):
            raise
        except Exception as error:  # one row's surprise fails that row, visibly; the run goes on
            _logger.exception("Account %s: checking outbox row %s failed unexpectedly.", self.account_id, row.id)
            self.ports.checkpoint.rollback()
            self.fail(row, _unknown_message(f"unexpected error: {error!r}"), "unknown")

    def resolve(self, row):
        try:
            self.keep_lease()
            proof = self.transport().find_sent(row.message_id)
        except _LeaseLost:
            raise
        except ProofUnavailable as error:
            self.fail(row, _unknown_message(str(error)), "unknown")
            return
        except MailboxError as error:
            self.proof_failed(row, str(error))
            if error.transient:
                raise _StopAccount() from error
            return
        if proof.found:
            _logger.info("Account %s: outbox row %s was accepted before (found in %s); not sent again.",
                         self.account_id, row.id, proof.where or "the mailbox")
            self.record_sent(row, proof.copy, proven=True)
            return
        waited = (self.now() - row.last_attempt_at).total_seconds() if row.last_attempt_at else None
        if waited is not None and waited < self.settings.proof_wait:
            check_at = row.last_attempt_at + dt.timedelta(seconds=self.settings.proof_wait)
            self.ports.outbox.await_proof(row.id, self.now(), check_at,
                                          "Checking whether the server received it before sending again.")
            self.commit()
            self.report.awaiting_proof += 1
            return
        if row.handed_over and not getattr(self.transport(), "proof_is_complete", False):
            # The whole message may have reached the server: an absent copy is no proof it did not.
            self.fail(row, UNCERTAIN_MESSAGE, "unknown")
            return
        if row.attempts >= row.max_attempts:
            self.fail(row, f"Not sent after {row.attempts} attempts.", "temporary")
            return
        # Proven not sent: a new attempt, committed before the transport is called again.
        if not self.ports.outbox.reattempt(row.id, self.now()):
            self.commit()
            return
        self.commit()
        self.attempt(self.ports.outbox.get(row.id))

    def proof_failed(self, row, message):
        """The proof could not be read (IMAP down): try again later; after a day, ask the user."""
        started = row.last_attempt_at or self.now()
        if (self.now() - started).total_seconds() > 86400:
            self.fail(row, _unknown_message(message), "unknown")
            return
        check_at = self.now() + dt.timedelta(seconds=backoff_delay(self.settings, row.attempts))
        self.ports.outbox.await_proof(row.id, self.now(), check_at,
                                      f"Could not check whether the server received it yet: {message}")
        self.commit()
        self.report.awaiting_proof += 1

    # -- outcomes -----------------------------------------------------------------

    def await_proof(self, row, message, handed_over=False):
        self.ports.outbox.await_proof(row.id, self.now(), self.now(), f"{message} Checking before any new attempt.",
                                      handed_over=handed_over)
        self.commit()
        self.report.awaiting_proof += 1

    def defer(self, row, message, retry_after=None):
        if row.attempts >= row.max_attempts:
            self.fail(row, f"Gave up after {row.attempts} attempts: {message}", "temporary")
            return
        # The server's Retry-After (a 429) wins over our own backoff when it asks for longer:
        # an early retry would only be refused again, and use up an attempt.
        seconds = max(backoff_delay(self.settings, row.attempts), retry_after or 0)
        retry = self.now() + dt.timedelta(seconds=seconds)
        self.ports.outbox.defer(row.id, self.now(), retry, message)
        self.commit()
        self.report.deferred += 1

    def fail(self, row, message, kind):
        self.ports.outbox.fail(row.id, self.now(), message, kind)
        self.commit()
        self.report.failed += 1
        _logger.warning("Account %s: outbox row %s failed (%s): %s", self.account_id, row.id, kind, message)


def _unknown_message(reason):
    return ("MailDesk stopped while sending this message and cannot check whether the server accepted it "
            f"({reason}). Look for it in your Sent folder or ask a recipient, then Retry or Discard.")
