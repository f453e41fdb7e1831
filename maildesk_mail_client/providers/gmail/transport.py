"""The Transport port for Gmail accounts: ``users.messages.send`` with the outbox's MIME, never twice.

**Sending.** ``messages.send`` with ``{"raw": base64url(MIME)}``, built by
google-api-python-client like every other call, executed exactly once:

- not through ``GmailClient.call`` (it retries 429/5xx/network errors);
- not through httplib2 either: httplib2 silently sends a request again
  when the connection drops before the answer's status line
  (``RemoteDisconnected`` is a ``BadStatusLine``, retried "regardless of
  RETRIES"), which for a send is the double send itself. The request goes
  out through ``_OneShotHttp`` (requests, whose default adapter never
  retries) behind google-auth's ``AuthorizedHttp``, which refreshes the
  token once on a 401 and replays: Gmail did nothing with a request whose
  token it refused.

Gmail files the message under SENT itself and answers its id: the Sent
copy is ``SentCopy(id, ("SENT", "ALL", …))`` and the engine indexes it in
the SENT label folder and All Mail at once; the sync's rows for that
message have the same id, so nothing is doubled.

**Errors.** 429 and 403 ``rateLimitExceeded`` / ``userRateLimitExceeded``:
not sent, ``SendDeferred`` (the engine backs off). 400 and other 4xx:
``SendRefused`` with Google's message. 401 after the refresh, a refused
refresh token (``invalid_grant``) or a missing scope: ``AuthenticationFailed``
(reconnect). 5xx, a timeout, a connection reset after the request left:
``SendUncertain`` (Gmail may have sent it): the engine asks for the proof.
Just before the request leaves, ``handover_hook`` (set by the engine)
commits that the message may be on its way, so a crash from there on is
never followed by an automatic resend without the proof finding it.

**The proof** (``find_sent``): ``messages.list`` with
``q="rfc822msgid:<Message-ID>"`` and ``includeSpamTrash`` (a sent message
the user deleted since still proves it went out). Found → sent; not found
once the engine's ``proof_wait`` has passed (Gmail's search may lag a
moment behind a send) → not sent, and the engine sends it again only if
that attempt never reached the hand-over; otherwise the row fails as
"unknown" and the user checks, then Retry or Discard.

**Limits.** Gmail takes messages up to 35 MB; the JSON ``raw`` body is base64
(a third larger), so the upload is capped at 47 MB here and refused above
as too large. Quota: a send costs 100 units, paced with the account's
other calls.
"""

from __future__ import annotations

import base64
import json
import logging

import google.auth.credentials
import google_auth_httplib2
import httplib2
import requests
from googleapiclient.errors import HttpError

from ...application.errors import AuthenticationFailed, ConnectionFailed
from ...application.sending import SendDeferred, SendRefused, SendUncertain, SentCopy, SentProof
from ..api_sending import message_id_of, never_left, too_large, wait_note, with_bcc
from .client import COSTS, RECONNECT, GmailClient, GmailConfig
from .mapper import placement_folders

_logger = logging.getLogger(__name__)

#: 35 MB of message, base64 in JSON
MAX_UPLOAD = 47 * 1000 * 1000
_RATE_REASONS = frozenset({"rateLimitExceeded", "userRateLimitExceeded", "RATE_LIMIT_EXCEEDED"})
_SCOPE_REASONS = frozenset({"insufficientPermissions", "ACCESS_TOKEN_SCOPE_INSUFFICIENT"})


class _NotSent(Exception):
    """The request never reached Gmail (no connection, TLS refused)."""


class _MaybeSent(Exception):
    """The request left; its answer did not come back."""


class _OneShotHttp:
    """httplib2's ``Http.request`` contract over requests, one attempt and no hidden retry."""

    def __init__(self, timeout):
        self.timeout = timeout
        self.session = requests.Session()

    def request(self, uri, method="GET", body=None, headers=None, redirections=None, connection_type=None,
                **_kwargs):
        try:
            response = self.session.request(method, uri, data=body, headers=headers, timeout=self.timeout,
                                            allow_redirects=False)
        except requests.RequestException as error:
            raise (_NotSent if never_left(error) else _MaybeSent)(_network_text(error)) from error
        info = {name.lower(): value for name, value in response.headers.items()}
        info.update(status=str(response.status_code), reason=response.reason or "")
        return httplib2.Response(info), response.content

    def close(self):
        self.session.close()


class _TokenCredentials(google.auth.credentials.Credentials):
    """The token provider's token; a refresh asks it for a new one (AuthenticationFailed when refused)."""

    def __init__(self, source):
        super().__init__()
        self._source = source
        self.token = source(False)

    def refresh(self, request):
        self.token = self._source(True)

    def __repr__(self):
        return "_TokenCredentials(<hidden>)"


class GmailTransport:
    provider = "gmail"
    files_sent_copy = True  # Gmail puts what it sends under SENT itself
    proof_is_complete = True  # what it accepted is found by Message-ID (see ports.Transport)
    handover_hook = None  # set by the engine around send(): marks the row "maybe sent" before the request goes

    def __init__(self, config: GmailConfig, client: GmailClient | None = None):
        self.config = config
        self.client = client or GmailClient(config)
        self.where = f"Gmail ({config.email})"
        self._http = None

    # -- sending ------------------------------------------------------------------

    def send(self, mime, envelope_from, recipients):
        raw = base64.urlsafe_b64encode(with_bcc(mime, recipients)).decode("ascii")
        if len(raw) > MAX_UPLOAD:
            raise SendRefused(too_large(self.where, len(raw), MAX_UPLOAD))
        request = self.client.messages.send(userId="me", body={"raw": raw})
        self.client.pacer.acquire(COSTS["gmail.users.messages.send"])
        self.client.stats["sends"] += 1
        http = self.http()  # the token first: a refused sign-in is not a hand-over
        if self.handover_hook is not None:
            self.handover_hook()  # committed: from here a lost answer is "maybe sent"
        self._handed_over()
        try:
            answer = request.execute(http=http, num_retries=0)
        except HttpError as error:
            self._refusal(error)
        except _NotSent as error:
            raise ConnectionFailed(f"{self.where} could not be reached to send the message ({error}). Nothing "
                                   "was sent; sending will retry.", kind="network") from error
        except _MaybeSent as error:
            raise SendUncertain(f"{self.where} did not confirm the message ({error}); it may have been "
                                "sent.") from error
        if not isinstance(answer, dict) or not answer.get("id"):
            raise SendUncertain(f"{self.where} accepted the message without naming it; it may have been sent.")
        return SentCopy(remote_id=answer["id"], folders=_folders(answer.get("labelIds") or ["SENT"]))

    def _handed_over(self):
        """``handed_over`` is committed, the request is about to leave (a test seam for kill -9)."""

    def http(self):
        if self._http is None:
            credentials = _TokenCredentials(self.config.token)
            self._http = google_auth_httplib2.AuthorizedHttp(credentials, http=_OneShotHttp(self.config.timeout),
                                                             max_refresh_attempts=1)
        return self._http

    def _refusal(self, error: HttpError):
        status, reasons, detail = error.status_code, _reasons(error), _detail(error)
        if status == 401:
            raise AuthenticationFailed(f"Gmail refused the access token for {self.config.email} even after a "
                                       f"refresh ({detail}) while sending: {RECONNECT}.") from error
        if status == 429 or (status == 403 and reasons & _RATE_REASONS):
            wait = _retry_after(error)
            deferred = SendDeferred(f"{self.where} is over its sending quota ({status} {detail}){wait_note(wait)}. "
                                    "Nothing was sent; sending will retry.")
            deferred.retry_after = wait
            raise deferred from error
        if status == 403 and reasons & _SCOPE_REASONS:
            raise AuthenticationFailed(f"{self.config.email} did not give MailDesk the right to send mail "
                                       f"({detail}): {RECONNECT}, and allow sending mail.") from error
        if status == 413:
            raise SendRefused(f"{self.where} refused the message as too large ({detail}). Remove or shrink "
                              "attachments, then Retry, or Discard.") from error
        if status >= 500:
            raise SendUncertain(f"{self.where} failed while sending the message ({status} {detail}); it may have "
                                "been sent.") from error
        raise SendRefused(f"{self.where} refused the message ({status} {detail}). Nothing was sent: fix the "
                          "message, then Retry, or Discard.") from error

    # -- the Sent copy and the proof ----------------------------------------------

    def find_sent(self, message_id):
        bare = (message_id or "").strip().strip("<>")
        if not bare:
            return SentProof(False)
        answer = self.client.call(
            lambda: self.client.messages.list(userId="me", q=f"rfc822msgid:{bare}", includeSpamTrash=True,
                                              maxResults=10),
            "looking for a sent message by its Message-ID")
        ids = [item["id"] for item in answer.get("messages") or () if item.get("id")]
        for gmail_id in ids:
            message = self.client.call(
                lambda gmail_id=gmail_id: self.client.messages.get(userId="me", id=gmail_id, format="minimal"),
                "reading the labels of a sent message")
            labels = message.get("labelIds") or []
            if "DRAFT" in labels:
                continue  # a draft with our Message-ID proves nothing about sending
            where = "the SENT label" if "SENT" in labels else "the mailbox"
            return SentProof(True, SentCopy(remote_id=gmail_id, folders=_folders(labels)), where=where)
        return SentProof(False)

    def file_sent_copy(self, mime, message_id):
        """Gmail filed it: where it is, or None while its search does not show it (the sync will)."""
        proof = self.find_sent(message_id or message_id_of(mime))
        return proof.copy if proof.found else None

    def close(self):
        try:
            self.client.close()
        finally:
            if self._http is not None:
                self._http.http.close()
                self._http = None


def _folders(labels) -> tuple[str, ...]:
    """The index folders of a message with these labels, exactly as the sync files it (no row it would undo)."""
    return tuple(sorted(placement_folders(labels)))


def _body(error: HttpError) -> dict:
    try:
        body = json.loads(error.content.decode("utf-8"))["error"]
    except (ValueError, KeyError, TypeError, AttributeError):
        return {}
    return body if isinstance(body, dict) else {}


def _reasons(error: HttpError) -> set[str]:
    body = _body(error)
    found = {item.get("reason") for item in body.get("errors") or () if isinstance(item, dict)}
    found |= {item.get("reason") for item in body.get("details") or () if isinstance(item, dict)}
    if isinstance(body.get("status"), str):
        found.add(body["status"])
    return {reason for reason in found if reason}


def _detail(error: HttpError) -> str:
    message = _body(error).get("message") or error.reason or ""
    reasons = sorted(_reasons(error) - {"PERMISSION_DENIED", "UNAUTHENTICATED", "NOT_FOUND", "INVALID_ARGUMENT"})
    text = " ".join(str(message).split())[:300] or "no reason given"
    return f"{text} [{', '.join(reasons)}]" if reasons else text


def _retry_after(error: HttpError) -> float | None:
    value = error.resp.get("retry-after") if error.resp is not None else None
    try:
        return max(float(value), 0.0) if value else None
    except ValueError:
        return None


def _network_text(error) -> str:
    if isinstance(error, requests.Timeout):
        return "no answer in time"
    return type(error).__name__


__all__ = ["MAX_UPLOAD", "GmailTransport"]
