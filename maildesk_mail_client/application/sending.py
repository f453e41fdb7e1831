"""Values and errors of sending: what a transport answers, and the outbox row the sender works on.

A transport (``ports.Transport``) says one of four things about an attempt:
it returned (the server accepted the message), :class:`SendRefused` (the
server said no for good: nothing was sent), :class:`SendDeferred` (not now:
nothing was sent, try later), or :class:`SendUncertain` (the connection
broke after the whole message was handed over, before the server's answer:
it may have been accepted). Only the last one needs the proof before any
new attempt; the engine treats it exactly like a crash at that point, and
since the message may have gone out, an absent proof is not enough to send
it again: the row ends ``failed`` / ``unknown`` for the user to check.
"""

from __future__ import annotations

import dataclasses
import datetime as dt

from .errors import MailboxError


class SendRefused(MailboxError):
    """The server refused the message for good (5xx, an address refused, too large, HTTP 400)."""

    transient = False


class SendDeferred(MailboxError):
    """Nothing was sent and the server or the network says "later" (4xx, 429, a connection refused)."""


class SendUncertain(MailboxError):
    """The message was handed over but the answer was lost: it may have been accepted."""


class ProofUnavailable(MailboxError):
    """The transport has no way to tell whether an earlier attempt reached the server."""

    transient = False


@dataclasses.dataclass(frozen=True)
class SentCopy:
    """The copy of a sent message in the account's Sent folder (or Gmail's SENT label)."""

    remote_id: str  # IMAP UID as text, Gmail message id, Graph immutable id
    folders: tuple[str, ...]  # remote ids of the folders that hold it (Gmail: SENT and All Mail)
    uid: int | None = None  # IMAP only


@dataclasses.dataclass(frozen=True)
class SentProof:
    """What the server holds of a Message-ID: nothing (``found`` False), or the evidence of a send."""

    found: bool
    copy: SentCopy | None = None  # the Sent copy, when it is already there
    where: str = ""  # for the log: "INBOX", "Sent", "SENT label", "sentitems"


@dataclasses.dataclass(frozen=True)
class OutboxRow:
    id: int
    account_id: int
    message_id: str
    mime: bytes
    envelope_from: str
    recipients: tuple[str, ...]
    state: str
    attempts: int
    max_attempts: int
    last_attempt_at: dt.datetime | None = None
    sent_filed: bool = False
    #: the attempt may have handed the whole message over (a lost answer, or a crash once the
    #: transport said it starts the hand-over): an absent proof then does not allow a resend
    handed_over: bool = False


@dataclasses.dataclass(frozen=True)
class SendSettings:
    #: seconds; renewed before each message and, by a heartbeat, all along a transport call (a send to
    #: many recipients on a slow server can outlast any fixed figure)
    lease_ttl: int = 120
    backoff_base: int = 60  # seconds after the first temporary failure: 1, 2, 4, ... minutes
    backoff_cap: int = 3600
    #: Seconds an attempt's evidence may take to appear (a server delivers the own-address copy
    #: a moment after it accepted): "not found" counts as "not sent" only after this long.
    proof_wait: int = 120
    batch: int = 50  # messages per run and account before the cron hands over (it is re-triggered)
    #: the own copy that proves an SMTP send may reach INBOX after it was filed: its removal is
    #: retried every ``own_copy_retry`` seconds for ``own_copy_window`` seconds after the send
    own_copy_retry: int = 120
    own_copy_window: int = 3600
