"""The Transport port for Outlook accounts: the outbox's MIME through Microsoft Graph, never twice.

**How a message goes out.** Not ``sendMail`` (one call that either sends or
not, with nothing to look up if its answer is lost) but the two steps
Microsoft documents for "find the sent item afterwards":

1. ``POST /me/messages`` with the MIME (base64, ``Content-Type: text/plain``)
   creates a draft with our Message-ID and an immutable id
   (``Prefer: IdType="ImmutableId"``, see graph.py);
2. ``POST /me/messages/{id}/send`` (202) submits it; Exchange moves it to
   Sent Items, where it keeps that id.

The Sent copy is therefore known at once: ``SentCopy(id, (sentitems id,))``,
indexed by the engine in Sent Items before any sync; the sync later sees
the same immutable id there and does not add a second row.

**Never twice.** The ``send`` step is made exactly once per call: no retry
of it here, whatever the answer (graph.py retries 429/5xx and network
errors, so it is not used for this step). 401 is the one exception: Graph
refused the token, not the message, so one fresh token and one more try.
Only answers that say "not done" (429, 404 draft gone, a connection that
never opened) are ``SendDeferred``; a timeout or a 5xx is
``SendUncertain`` and the engine asks for the proof before anything else.
Just before ``/send`` leaves, ``handover_hook`` (set by the engine) commits
that the message may be on its way: from there on, a crash or a lost
answer is never followed by an automatic resend unless the proof finds it.

**The proof** (``find_sent``): ``GET /me/messages?$filter=internetMessageId
eq '<id>'`` over the whole mailbox. A copy that is not a draft proves the
message was submitted (Sent Items, or wherever the user moved it since). A
draft with our Message-ID is an attempt that stopped between the two
steps: it was not sent; ``send`` deletes it and uploads the outbox's MIME
again (the user may have edited a failed message since), so a crash leaves
no stray draft either. Exchange moves a
submitted message to Sent Items a moment after the 202; the engine's
``proof_wait`` (120 s) covers that before "not found" counts as "not sent"
(and even then the engine resends only an attempt that never reached the
hand-over; otherwise the user is asked to check, then Retry or Discard).

**Limits.** Graph takes at most 4 MB per request, base64 included, so a
MIME message above about 3 MB is refused here as too large (permanent,
with that message). Upload sessions exist only for attachments of a draft
built from JSON, not for a MIME draft whose bytes and Message-ID we must
keep; bigger messages are not supported through Outlook in this version.
Sending needs the ``Mail.Send`` permission: without it Graph answers 403
and the account is asked to reconnect.
"""

from __future__ import annotations

import base64
import logging

import requests

from ...application.errors import AuthenticationFailed, ConnectionFailed, MailboxError
from ...application.sending import SendDeferred, SendRefused, SendUncertain, SentCopy, SentProof
from ..api_sending import message_id_of, never_left, too_large, wait_note, with_bcc
from .auth import http_session, reconnect_message
from .config import OutlookConfig
from .graph import IMMUTABLE_IDS, GraphClient, GraphError, error_of, retry_after

_logger = logging.getLogger(__name__)

#: Graph's limit for one request, the base64 MIME included
MAX_REQUEST = 4 * 1024 * 1024
_SELECT = "id,isDraft,parentFolderId,internetMessageId"


class OutlookTransport:
    provider = "outlook"
    files_sent_copy = True  # Exchange files the sent message in Sent Items itself
    proof_is_complete = True  # what it accepted is found by Message-ID (see ports.Transport)
    moves_keep_ids = True  # immutable ids: the Sent row is the same message the sync will list
    handover_hook = None  # set by the engine around send(): marks the row "maybe sent" before /send leaves

    def __init__(self, config: OutlookConfig, client: GraphClient | None = None):
        self.config = config
        self.client = client or GraphClient(config)
        self.where = f"Microsoft Graph ({config.email})"
        self._session = None
        self._sent_folder = None

    # -- sending ------------------------------------------------------------------

    def send(self, mime, envelope_from, recipients):
        message_id = message_id_of(mime)
        payload = base64.b64encode(with_bcc(mime, recipients))
        if len(payload) > MAX_REQUEST:
            raise SendRefused(too_large(self.where, len(payload), MAX_REQUEST,
                                        " Outlook accounts send up to about 3 MB through MailDesk."))
        # Read before anything goes out: after the 202 nothing may fail, or the engine would think "not sent".
        sent_folder = self.sent_folder_id()
        found = self._lookup(message_id)
        for item in found:
            if not item.get("isDraft"):
                # An earlier attempt got through (its answer was lost): never twice.
                _logger.info("%s: %s was sent already; not sent again.", self.where, message_id)
                return SentCopy(remote_id=item["id"], folders=(item.get("parentFolderId") or sent_folder,))
        for item in found:
            # An attempt that stopped before submitting left this draft. Not reused: the user may have
            # edited the message since (a failed row is editable), and the outbox's MIME is what goes out.
            self._discard(item["id"])
        draft = self._create(payload)
        self._created(draft)
        if self.handover_hook is not None:
            self.handover_hook()  # committed: from here a lost answer is "maybe sent"
        self._handed_over()
        try:
            self._submit(draft)
        except SendRefused:
            self._discard(draft)  # refused for good: no stray draft in the user's Outlook
            raise
        return SentCopy(remote_id=draft, folders=(sent_folder,))

    def _discard(self, draft_id):
        try:
            response = self.client.send("DELETE", f"/me/messages/{draft_id}", what="removing an unsent draft")
            if response.status_code not in (200, 204, 404):
                self.client.check(response, "removing an unsent draft")
        except (MailboxError, requests.RequestException) as error:  # untidy, not wrong: the next attempt retries
            _logger.info("%s: an unsent draft stays in Drafts: %s", self.where, error)

    def _created(self, draft_id):
        """The draft exists, nothing is submitted (a test seam for kill -9)."""

    def _handed_over(self):
        """``handed_over`` is committed, the send request is about to leave (a test seam for kill -9)."""

    def _create(self, payload: bytes) -> str:
        try:
            response = self._post("/me/messages", payload, "text/plain", "creating the message")
        except requests.RequestException as error:
            # Only a draft can have been made: nothing is sent, and the next attempt submits that draft.
            raise SendDeferred(f"{self.where} did not answer while the message was being uploaded ({_what(error)}). "
                               "Sending will retry.") from error
        status = response.status_code
        body = _json(response)
        if status in (200, 201) and body.get("id"):
            return body["id"]
        self._refusal(status, body, response.headers, "upload the message", uncertain=False)
        raise SendDeferred(f"{self.where} answered HTTP {status} without a message id while the message was "
                           "being uploaded. Sending will retry.")

    def _submit(self, draft_id: str) -> None:
        try:
            response = self._post(f"/me/messages/{draft_id}/send", b"", None, "sending the message")
        except requests.RequestException as error:
            if never_left(error):
                raise ConnectionFailed(f"{self.where} could not be reached to send the message ({_what(error)}). "
                                       "Nothing was sent; sending will retry.", kind="network") from error
            raise SendUncertain(f"{self.where} did not confirm the message ({_what(error)}); it may have been "
                                "sent.") from error
        if response.status_code in (200, 202, 204):
            return
        self._refusal(response.status_code, _json(response), response.headers, "send the message", uncertain=True)

    def _refusal(self, status, body, headers, what, uncertain):
        """Graph's refusal as the engine's error. ``uncertain``: a 5xx may hide a message already sent."""
        code, message = error_of(body)
        message = message.rstrip(". ")
        detail = f"{code}: {message}" if code and message else (code or message or f"HTTP {status}")
        if status == 401:
            raise AuthenticationFailed(reconnect_message(f"Microsoft Graph refused a fresh access token, {detail}"))
        if status == 403 and code != "ErrorSendAsDenied":
            raise AuthenticationFailed(
                f"Microsoft Graph did not allow MailDesk to {what} ({detail}). Reconnect the account (MailDesk → "
                "Mailboxes → the account → Connect Outlook) and allow sending mail (Mail.Send).")
        if status == 429 or (status == 503 and not uncertain):
            wait = retry_after(headers)
            error = SendDeferred(f"{self.where} is throttling this mailbox (HTTP {status}, {detail}){wait_note(wait)}."
                                 " Nothing was sent; sending will retry.")
            error.retry_after = wait
            raise error
        if status == 404 and uncertain:
            raise SendDeferred(f"The draft MailDesk uploaded to {self.where} disappeared before it was sent "
                               f"({detail}). Nothing was sent; sending will retry.")
        if status == 413 or code in ("ErrorMessageSizeExceeded", "RequestEntityTooLarge"):
            raise SendRefused(f"{self.where} refused the message as too large ({detail}). Remove or shrink "
                              "attachments, then Retry, or Discard.")
        if status >= 500:
            if uncertain:
                raise SendUncertain(f"{self.where} failed while sending the message (HTTP {status}, {detail}); it "
                                    "may have been sent.")
            raise SendDeferred(f"{self.where} failed while the message was being uploaded (HTTP {status}, "
                               f"{detail}). Nothing was sent; sending will retry.")
        raise SendRefused(f"{self.where} refused to {what} (HTTP {status}, {detail}). Nothing was sent: fix the "
                          "message, then Retry, or Discard.")

    def _post(self, path, data, content_type, what):
        """One POST, no retry but a single one after a refused token (Graph did nothing with the message)."""
        headers = {"Prefer": IMMUTABLE_IDS, "Accept": "application/json"}
        if content_type:
            headers["Content-Type"] = content_type
        token = None
        for renew in (False, True):
            token = self.client.tokens.get(force=renew, stale=token)
            headers["Authorization"] = "Bearer " + token
            self.client.counts[f"POST {path.rsplit('/', 1)[-1]}"] += 1
            response = self.session().post(self.client.url(path), data=data, headers=headers,
                                           timeout=self.config.timeout)
            if response.status_code != 401:
                return response
            _logger.info("%s refused the access token while %s; trying once with a new one.", self.where, what)
        return response

    def session(self):
        if self._session is None:
            self._session = http_session(self.config)
        return self._session

    # -- the Sent copy and the proof ----------------------------------------------

    def sent_folder_id(self) -> str:
        if self._sent_folder is None:
            self._sent_folder = self._read(lambda: self.client.get(
                "/me/mailFolders/sentitems", params={"$select": "id"}, what="finding Sent Items"))["id"]
        return self._sent_folder

    def _lookup(self, message_id: str) -> list[dict]:
        """Every message of the mailbox with this Message-ID (drafts included), newest Graph knows of."""
        if not message_id:
            return []
        literal = message_id.replace("'", "''")
        answer = self._read(lambda: self.client.get(
            "/me/messages", params={"$filter": f"internetMessageId eq '{literal}'", "$select": _SELECT,
                                    "$top": "10"},
            what="looking for the message by its Message-ID"))
        return [item for item in answer.get("value") or () if isinstance(item, dict) and item.get("id")]

    def _read(self, call):
        try:
            return call()
        except GraphError as error:
            if error.status == 403:
                raise AuthenticationFailed(f"{error} Reconnect the account (MailDesk → Mailboxes → the account → "
                                           "Connect Outlook).") from error
            raise

    def find_sent(self, message_id):
        found = self._lookup(message_id)
        sent = [item for item in found if not item.get("isDraft")]
        if not sent:
            return SentProof(False)
        folder = self.sent_folder_id()
        best = next((item for item in sent if item.get("parentFolderId") == folder), sent[0])
        where = "Sent Items" if best.get("parentFolderId") == folder else "the mailbox"
        return SentProof(True, SentCopy(remote_id=best["id"], folders=(best.get("parentFolderId") or folder,)),
                         where=where)

    def file_sent_copy(self, mime, message_id):
        """Exchange filed it: where it is now, or None while it is not visible yet (the sync will list it)."""
        proof = self.find_sent(message_id or message_id_of(mime))
        return proof.copy if proof.found else None

    def close(self):
        try:
            self.client.close()
        finally:
            if self._session is not None:
                self._session.close()
                self._session = None


def _json(response) -> dict:
    try:
        value = response.json()
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


def _what(error) -> str:
    if isinstance(error, requests.Timeout):
        return "no answer in time"
    return type(error).__name__


__all__ = ["MAX_REQUEST", "OutlookTransport"]
