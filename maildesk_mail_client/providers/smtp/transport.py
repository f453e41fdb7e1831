"""The Transport port for IMAP accounts: SMTP to send, IMAP for the Sent copy and the proof.

**The proof (did an earlier attempt reach the server?).** SMTP has no
idempotency key and no way to ask "did you take message X?". So every
message is also addressed, in the envelope only (like a Bcc), to the
account's own address. A server that accepted the message delivers that
copy into the account's own mailbox; a server that did not accept it
delivers nothing. ``find_sent`` looks for the Message-ID in the Sent
folder (we may have filed it already), in INBOX (the own copy) and in
Junk / Spam (a filter may have put the own copy there), over IMAP. What
this proves, exactly:

- found → the server accepted the message (a copy with our unique
  Message-ID cannot exist otherwise): it is recorded sent, never resent;
- not found, ``proof_wait`` seconds after the attempt started, and the
  attempt never started handing over the DATA payload (``handover_hook``
  is called, and commits, just before it) → the server cannot have accepted
  it, so sending again cannot double it. Not found after a hand-over (the
  answer to DATA lost, or a crash after the hook) is *not* taken as "not
  sent": the engine fails the row as ``unknown`` for the user to check.
  The absence of the own copy is only evidence; this rests on it being
  delivered within ``proof_wait`` (120 s by default; local delivery on the
  account's own server usually takes well under a second) and not being
  filtered away before IMAP sees it. A server that discards or
  re-routes mail to the account's own address voids the proof: set the
  account's email to the mailbox's real address.
- the account has no own address or no IMAP login → ``ProofUnavailable``:
  the row ends ``failed`` / ``unknown`` and the user is asked to check.

Once the Sent copy is filed, the own copy is removed from INBOX (by the
UIDs a Message-ID search finds, so nothing else is touched) unless the
user addressed themselves in To or Cc. When it arrives later than that,
``remove_own_copy`` answers False and the engine looks again on later
runs for a bounded time (``SendSettings.own_copy_window``).
"""

from __future__ import annotations

import contextlib
import email.utils
import logging
import re
import smtplib

from ...application.domain import FolderRole
from ...application.errors import ConnectionFailed
from ...application.sending import (
    ProofUnavailable,
    SendDeferred,
    SendRefused,
    SendUncertain,
    SentCopy,
    SentProof,
)
from ..imap.connection import ImapConfig
from ..imap.session import ImapSessionAdapter
from .connection import SmtpConfig, connect, quit_quietly, reply_text

_logger = logging.getLogger(__name__)

_LINE_END = re.compile(rb"\r\n|\r|\n")


def _data_bytes(mime: bytes) -> bytes:
    """The DATA payload: CRLF line ends, leading dots doubled, and the final ``.`` line."""
    body = _LINE_END.sub(b"\r\n", mime)
    body = re.sub(rb"(?m)^\.", b"..", body)
    if not body.endswith(b"\r\n"):
        body += b"\r\n"
    return body + b".\r\n"


class SmtpTransport:
    provider = "imap"
    files_sent_copy = False  # SMTP servers do not file sent mail: we APPEND it
    #: set by the engine for one send: called (it commits) just before the DATA payload goes out
    handover_hook = None

    def __init__(self, smtp: SmtpConfig, imap: ImapConfig | None):
        self.smtp = smtp
        self.imap = imap
        self._session = None
        self._paths = None  # (Sent, INBOX, Junk) paths, listed once per transport

    # -- sending ------------------------------------------------------------------

    def send(self, mime, envelope_from, recipients):
        config = self.smtp
        where = config.where
        own = (config.own_address or "").strip()
        envelope = list(dict.fromkeys(recipients))
        if own and own.lower() not in {address.lower() for address in envelope}:
            envelope.append(own)  # the proof: see the module docstring
        client = connect(config)
        try:
            self._check_size(client, len(mime))
            self._command(client.mail(envelope_from, self._mail_options(client, len(mime))),
                          f"refused the sender {envelope_from}", client)
            refused, later = [], []
            for address in envelope:
                code, text = client.rcpt(address)
                if 400 <= code < 500:
                    later.append(f"{address} ({code} {_text(text)})")
                elif code >= 500:
                    refused.append(f"{address} ({code} {_text(text)})")
            if refused or later:
                client.rset()
            if refused:
                raise SendRefused(f"{where} refused the recipient(s) {', '.join(refused)}. Nothing was sent: "
                                  "fix or remove the address, then Retry, or Discard.")
            if later:
                raise SendDeferred(f"{where} will not take {', '.join(later)} right now. Sending will retry.")
            client.putcmd("data")
            code, text = client.getreply()
            if code != 354:
                self._command((code, text), "refused to take the message (DATA)", client)
            payload = _data_bytes(mime)
            if self.handover_hook is not None:
                self.handover_hook()
            try:
                client.send(payload)
            except (OSError, smtplib.SMTPException) as error:
                # The final "." cannot have gone out whole: the server cannot have accepted it.
                raise SendDeferred(f"The connection to {where} broke while sending the message: {error}. "
                                   "Sending will retry.") from error
            self._handed_over()
            try:
                code, text = client.getreply()
            except (OSError, smtplib.SMTPException, EOFError) as error:
                raise SendUncertain(f"The connection to {where} broke after the whole message was sent, before "
                                    f"the server confirmed it ({error}); it may have been accepted.") from error
            if code != 250:
                self._command((code, text), "did not accept the message", client)
        except smtplib.SMTPServerDisconnected as error:
            raise ConnectionFailed(f"{where} closed the connection before the message was sent: {error}. "
                                   "Sending will retry.", kind="network") from error
        except TimeoutError as error:
            raise ConnectionFailed(f"{where} stopped answering before the message was sent. Sending will retry.",
                                   kind="timeout") from error
        except OSError as error:
            raise ConnectionFailed(f"The connection to {where} failed before the message was sent: {error}. "
                                   "Sending will retry.", kind="network") from error
        finally:
            quit_quietly(client)
        return None

    def _handed_over(self):
        """The whole message is on the wire, the server's answer not read yet (a test seam for kill -9)."""

    def _mail_options(self, client, size):
        options = []
        if client.has_extn("size"):
            options.append(f"SIZE={size}")
        if client.has_extn("8bitmime"):
            options.append("BODY=8BITMIME")
        return options

    def _check_size(self, client, size):
        limit = (client.esmtp_features.get("size") or "").strip()
        if limit.isdigit() and int(limit) > 0 and size > int(limit):
            raise SendRefused(f"The message is too large for {self.smtp.where}: {size / 1_000_000:.1f} MB, the server "
                              f"accepts up to {int(limit) / 1_000_000:.1f} MB. Remove or shrink attachments, then "
                              "Retry, or Discard.")

    def _command(self, answer, what, client):
        code, text = answer
        if 200 <= code < 400:
            return
        message = f"{self.smtp.where} {what}: {code} {_text(text)}."
        with contextlib.suppress(OSError, smtplib.SMTPException):
            client.rset()
        if code == 552 or (code >= 500 and b"size" in (text or b"").lower()):
            raise SendRefused(f"{message} The message is too large: remove or shrink attachments, then Retry, "
                              "or Discard.")
        if 400 <= code < 500:
            raise SendDeferred(f"{message} Sending will retry.")
        if code in (530, 535):
            raise SendRefused(f"{message} The server wants a login: set the SMTP login and password of the "
                              "account.")
        raise SendRefused(f"{message} Nothing was sent.")

    # -- the Sent copy and the proof ----------------------------------------------

    def session(self) -> ImapSessionAdapter:
        if self.imap is None:
            raise ProofUnavailable("the account has no IMAP login to look in its folders")
        if self._session is None or self._session.broken:
            if self._session is not None:
                self._session.close()
            self._session = ImapSessionAdapter.open(self.imap)
        return self._session

    def _folders(self):
        if self._paths is None or self._session is None or self._session.broken:
            self._paths = self._list_paths()
        return self._paths

    def _list_paths(self):
        folders = self.session().list_folders()
        sent = next((f.path for f in folders if f.role == FolderRole.SENT), None)
        if sent is None:
            sent = next((f.path for f in folders if f.path.lower() in ("sent", "sent items", "sent messages",
                                                                        "inbox.sent")), None)
        inbox = next((f.path for f in folders if f.role == FolderRole.INBOX), "INBOX")
        junk = next((f.path for f in folders if f.role == FolderRole.JUNK), None)
        if junk is None:
            junk = next((f.path for f in folders if f.path.lower() in ("junk", "spam", "junk e-mail", "junk email",
                                                                        "inbox.junk", "inbox.spam")), None)
        return sent, inbox, junk

    def find_sent(self, message_id):
        if not (self.smtp.own_address or "").strip():
            raise ProofUnavailable("the account has no email address, so no copy of the message comes back to it")
        sent, inbox, junk = self._folders()
        if sent is not None:
            uids = self.session().find_message_id(sent, message_id)
            if uids:
                return SentProof(True, SentCopy(remote_id=str(uids[-1]), folders=(sent,), uid=uids[-1]), where=sent)
        for folder in (inbox, junk):
            if folder is not None and self.session().find_message_id(folder, message_id):
                return SentProof(True, None, where=folder)
        return SentProof(False)

    def file_sent_copy(self, mime, message_id):
        session = self.session()
        sent, _inbox, _junk = self._folders()
        if sent is None:
            _logger.info("%s has no Sent folder; the sent message %s is not filed.", self.imap.host, message_id)
            return None
        uids = session.find_message_id(sent, message_id)
        uid = uids[-1] if uids else session.append(sent, mime)
        if uid is None:  # no UIDPLUS: find what we just appended
            found = session.find_message_id(sent, message_id)
            uid = found[-1] if found else None
        return SentCopy(remote_id=str(uid), folders=(sent,), uid=uid) if uid is not None else None

    def remove_own_copy(self, mime, message_id) -> bool:
        """Remove the own copy from INBOX: True when done or nothing is to be removed (the user wrote to
        themselves, or there is no own address); False when it has not arrived yet. Only the UIDs the
        Message-ID search finds are deleted, so nothing else is touched."""
        own = (self.smtp.own_address or "").strip().lower()
        if not own or own in _visible_recipients(mime) or self.imap is None:
            return True
        session = self.session()
        _sent, inbox, _junk = self._folders()
        uids = session.find_message_id(inbox, message_id)
        if not uids:
            return False
        session.delete_uids(inbox, uids)
        return True

    def close(self):
        if self._session is not None:
            self._session.close()
            self._session = None


def _visible_recipients(mime: bytes) -> set[str]:
    head = mime.split(b"\r\n\r\n", 1)[0].decode("utf-8", "replace")
    values = re.findall(r"(?im)^(?:to|cc):(.*(?:\r?\n[ \t].*)*)", head)
    return {address.lower() for _name, address in email.utils.getaddresses(values)}


def _text(value) -> str:
    text = value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value or "")
    return " ".join(text.split())


__all__ = ["SmtpTransport", "reply_text"]
