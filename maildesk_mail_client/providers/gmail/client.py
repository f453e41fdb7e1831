"""The Gmail API through google-api-python-client: retries, batches, quota, tokens.

No HTTP is written here: the service is built from the discovery document
the library ships (``static_discovery``), pointed at ``config.endpoint``,
and every call is the library's. This module adds what Gmail asks of a
client that wants to be served:

- **Pacing.** Each call first waits for its quota units (``quota.py``).
- **Backoff.** 429, 403 ``rateLimitExceeded`` / ``userRateLimitExceeded``
  (what an exhausted per-user quota often comes back as) and 5xx are
  retried with exponential backoff and jitter, honouring Retry-After, a
  bounded number of times; then the error is ``ConnectionFailed``
  (transient: the engine backs the account off). So are network errors
  and timeouts. No wait outlives the run: one (pacer, backoff,
  Retry-After) that would end past ``deadline`` ends the call with
  ``ConnectionFailed`` at once.
- **Refusals only an admin can fix** (401 after a refresh, 403
  insufficientPermissions / domainPolicy, 400 failedPrecondition: Gmail
  off for the user) are ``AuthenticationFailed``, which puts the account in
  "reconnect needed" with what to do, never a backoff loop.
- **Batches.** ``get_many`` sends ``messages.get`` in batches of at most
  50, to ``<endpoint>/batch/gmail/v1``: the service's own
  ``new_batch_http_request()`` posts to the discovery document's rootUrl,
  i.e. Google, whatever the endpoint (googleapis/google-api-python-client#1107),
  and takes no ``batch_uri``, so the batch is the library's
  ``BatchHttpRequest`` built with one. An item that fails
  inside a batch is sent again in a later batch, never dropped.
- **Tokens.** The access token comes from ``config.token(force_refresh)``.
  On a 401 the library asks for a fresh one once (``_TokenCredentials.refresh``)
  and replays the request; a second 401 is ``AuthenticationFailed``. The
  token never reaches a log line: errors are described by status and
  Google's reason only.
"""

from __future__ import annotations

import dataclasses
import email.utils
import functools
import hashlib
import http.client
import json
import logging
import random
import re
import time
from collections import Counter
from collections.abc import Callable, Iterable

import google.auth.credentials
import google_auth_httplib2
import httplib2
from googleapiclient import discovery
from googleapiclient.errors import BatchError, HttpError
from googleapiclient.http import BatchHttpRequest

from ...application.errors import AuthenticationFailed, ConnectionFailed, MailboxError, ServerError
from .quota import PastDeadline, pacer_for

_logger = logging.getLogger(__name__)

DEFAULT_ENDPOINT = "https://gmail.googleapis.com"
BATCH_PATH = "/batch/gmail/v1"
MAX_BATCH = 50  # Gmail's advice: larger batches are rate limited harder

#: quota units per method (https://developers.google.com/gmail/api/reference/quota)
COSTS = {
    "gmail.users.getProfile": 1,
    "gmail.users.labels.list": 1,
    "gmail.users.labels.get": 1,
    "gmail.users.messages.list": 5,
    "gmail.users.messages.get": 5,
    "gmail.users.history.list": 2,
    "gmail.users.messages.send": 100,
}
_RATE_REASONS = frozenset({"rateLimitExceeded", "userRateLimitExceeded", "RATE_LIMIT_EXCEEDED"})
_SCOPE_REASONS = frozenset({"insufficientPermissions", "ACCESS_TOKEN_SCOPE_INSUFFICIENT"})
_DOMAIN_REASONS = frozenset({"domainPolicy"})  # a Workspace admin's policy refuses the app
_DISABLED_REASONS = frozenset({"failedPrecondition", "FAILED_PRECONDITION"})  # 400: Gmail is off for the user
_INVALID_REASONS = frozenset({"invalidArgument", "INVALID_ARGUMENT"})
# What a socket, httplib2 or http.client raise when the network, not Gmail, failed.
_NETWORK_ERRORS = (OSError, httplib2.HttpLib2Error, http.client.HTTPException)

RECONNECT = "reconnect the account (MailDesk → Mailboxes → the account → Connect Gmail)"


@dataclasses.dataclass(frozen=True)
class GmailConfig:
    """One Gmail mailbox. ``token(force_refresh)`` returns an access token, a new one when
    ``force_refresh``; it raises AuthenticationFailed when Google refuses the refresh token."""

    email: str
    endpoint: str
    token: Callable[[bool], str]
    quota_per_minute: int = 15000
    timeout: float = 30
    max_tries: int = 6
    backoff_base: float = 1.0  # seconds before the second try; doubles each time, with jitter
    backoff_cap: float = 32.0
    max_wait: float = 120.0  # a Retry-After longer than this ends the call (the account backs off)
    history_page: int = 500  # history records per page, one committed step each (500: Gmail's maximum)

    def __repr__(self):  # the token callable may close over secrets
        return f"GmailConfig(email={self.email!r}, endpoint={self.endpoint!r})"


class NotFound(ServerError):
    """404: the message, label or history start is gone. Callers decide what that means."""


class InvalidArgument(ServerError):
    """400 invalidArgument: Gmail refused a parameter, e.g. a page token it no longer honours."""


class _TokenCredentials(google.auth.credentials.Credentials):
    """Credentials whose refresh asks the token provider (Odoo's google.gmail.mixin) for a new token."""

    def __init__(self, source: Callable[[bool], str]):
        super().__init__()
        self._source = source
        self.token = source(False)

    def refresh(self, request):
        self.token = self._source(True)

    def __repr__(self):
        return "_TokenCredentials(<hidden>)"


class GmailClient:
    def __init__(self, config: GmailConfig, sleep=time.sleep):
        self.config = config
        self.where = f"Gmail ({config.email})"
        self._sleep = sleep
        self.pacer = pacer_for(config.endpoint, config.email, config.quota_per_minute)
        #: time.monotonic() by which the run must be over (the engine sets it through the mailbox):
        #: a wait (pacer, backoff, Retry-After) that would end past it raises ConnectionFailed instead
        self.deadline: float | None = None
        self.stats = Counter()  # round trips, retries, refusals: for tests and benchmarks
        endpoint = config.endpoint.rstrip("/")
        self._batch_uri = endpoint + BATCH_PATH
        credentials = _call_token(self, lambda: _TokenCredentials(config.token))
        self._http = google_auth_httplib2.AuthorizedHttp(
            credentials, http=httplib2.Http(timeout=config.timeout), max_refresh_attempts=1)
        self.service = discovery.build("gmail", "v1", http=self._http, static_discovery=True,
                                       cache_discovery=False, client_options={"api_endpoint": endpoint})

    # Each call of a resource method builds a new Resource from the discovery document (a few
    # ms each, 13 for messages): built once, and only when used, so a batch of 50 gets costs a
    # few ms of CPU instead of 0.6 s, and a no-change pass builds only users and history.
    @functools.cached_property
    def users(self):
        # Built at run time from the discovery document, which pylint cannot see.
        return self.service.users()  # pylint: disable=no-member

    @functools.cached_property
    def messages(self):
        return self.users.messages()

    @functools.cached_property
    def labels(self):
        return self.users.labels()

    @functools.cached_property
    def history(self):
        return self.users.history()

    def close(self):
        self.service.close()

    def token_fingerprint(self) -> str:
        """A digest of the current access token: one token is one Google account, for its lifetime."""
        return hashlib.sha256(str(self._http.credentials.token).encode()).hexdigest()

    # -- one call ---------------------------------------------------------------

    def call(self, make_request: Callable[[], object], what: str) -> dict:
        """Execute the request ``make_request()`` builds, paced and retried. 404 raises NotFound."""
        request = make_request()
        return self._with_retries(lambda: request.execute(num_retries=0), COSTS.get(request.methodId, 5), what)

    def _with_retries(self, run, cost, what):
        last, kind = None, "network"
        for attempt in range(1, self.config.max_tries + 1):
            self._pace(cost, what)
            self.stats["round_trips"] += 1
            try:
                return run()
            except HttpError as error:
                hint = self._verdict(error, what)  # raises what is not worth retrying
                last, kind = f"{error.status_code} {_reason(error)}", "network"
            except BatchError as error:
                hint, last, kind = None, f"a batch answer that could not be read ({error.reason})", "network"
            except _NETWORK_ERRORS as error:
                hint, last = None, _network_text(error)
                kind = "timeout" if isinstance(error, TimeoutError) else "network"
                self.stats["timeouts" if kind == "timeout" else "network_errors"] += 1
            self._pause(attempt, hint, what, last)
        raise ConnectionFailed(f"{self.where} kept failing while {what} ({last}) after "
                               f"{self.config.max_tries} tries. The sync will retry later.", kind=kind)

    def _pause(self, attempt, hint, what, last):
        self.stats["retries"] += 1
        if attempt >= self.config.max_tries:
            return
        delay = self.backoff(attempt, hint)
        _logger.info("%s: %s while %s; trying again in %.1f s.", self.where, last, what, delay)
        self.wait(delay, what, last)

    def wait(self, delay, what, why):
        """Sleep ``delay`` s, unless that ends past the run's deadline: then the run ends (transient),
        and the account's backoff waits instead, holding no cron worker and no lease."""
        if self.deadline is not None and time.monotonic() + delay > self.deadline:
            self.stats["deadline_stops"] += 1
            raise ConnectionFailed(f"{self.where}: {why} while {what}; the {delay:.1f} s wait it takes would "
                                   "outlast this run's time. The sync will retry later.", kind="network")
        self._sleep(delay)

    def _pace(self, cost, what):
        try:
            self.pacer.acquire(cost, self.deadline)
        except PastDeadline as error:
            self.stats["deadline_stops"] += 1
            raise ConnectionFailed(f"{self.where}: the quota of {self.config.quota_per_minute} units a minute "
                                   f"allows {what} only in {error.args[0]:.1f} s, after this run's time. "
                                   "The sync will carry on in the next run.", kind="network") from None

    def backoff(self, attempt: int, hint: float | None = None) -> float:
        """Exponential with full jitter on its upper half; never shorter than Retry-After."""
        ceiling = min(self.config.backoff_cap, self.config.backoff_base * 2 ** (attempt - 1))
        delay = random.uniform(ceiling / 2, ceiling)
        return max(delay, hint or 0.0)

    def _verdict(self, error: HttpError, what: str) -> float | None:
        """Retry-After (or 0) for errors worth retrying; raises the others as the engine's errors."""
        status, reasons = error.status_code, _reasons(error)
        if status == 401:
            raise AuthenticationFailed(
                f"Gmail refused the access token for {self.config.email} even after a refresh "
                f"({_reason(error)}) while {what}: {RECONNECT}.")
        if status == 429 or status >= 500 or (status == 403 and reasons & _RATE_REASONS):
            if status in (429, 403):
                self.stats["refusals"] += 1
            hint = _retry_after(error.resp)
            if hint is not None and hint > self.config.max_wait:
                raise ConnectionFailed(f"{self.where} asks to wait {hint:.0f} s before {what}; "
                                       "the sync will retry then.", kind="network")
            return hint
        if status == 403 and reasons & _SCOPE_REASONS:
            raise AuthenticationFailed(f"{self.config.email} did not give MailDesk access to its mail "
                                       f"({_reason(error)}): {RECONNECT}, and allow reading mail.")
        # Refusals no retry fixes: only an administrator can (account "reconnect needed", not a backoff loop).
        if status == 403 and reasons & _DOMAIN_REASONS:
            raise AuthenticationFailed(
                f"The Google Workspace domain of {self.config.email} does not allow MailDesk to read its mail "
                f"({_reason(error)}): a Workspace admin must allow the app (Admin console → Security → "
                f"Access and data control → API controls → App access control), then {RECONNECT}.")
        if status == 400 and reasons & _DISABLED_REASONS:
            raise AuthenticationFailed(
                f"Gmail is not enabled for {self.config.email} ({_reason(error)}): a Google Workspace admin "
                f"must turn Gmail on for this user (Admin console → Apps → Google Workspace → Gmail → "
                f"Service status), or connect an account that has Gmail; then {RECONNECT}.")
        if status == 404:
            raise NotFound(f"{self.where}: not found while {what}.")
        if status == 400 and reasons & _INVALID_REASONS:
            raise InvalidArgument(f"{self.where} refused {what}: {status} {_reason(error)}.")
        raise ServerError(f"{self.where} refused {what}: {status} {_reason(error)}.")

    # -- many messages ----------------------------------------------------------

    def get_many(self, ids: Iterable[str], what: str, **params) -> dict[str, dict | None]:
        """``messages.get`` of each id, in batches; None for a message that is gone (404).

        An item refused inside a batch goes to a later batch. A throttled item
        (429, 403 rate limit) pauses the next batch, whatever it holds, for
        its Retry-After or the backoff; a failed one (5xx) pauses only when
        nothing else is left to send.
        """
        pending = list(dict.fromkeys(ids))
        results: dict[str, dict | None] = {}
        failures = Counter()
        size = self.batch_size(COSTS["gmail.users.messages.get"])
        wait = 0.0
        while pending:
            chunk, pending = pending[:size], pending[size:]
            if wait:
                self.wait(wait, what, "messages refused inside a batch")
            answers = self._batch(chunk, what, params)
            throttled, retry = [], []
            for message_id, (answer, error) in answers.items():
                if error is None:
                    results[message_id] = answer
                    continue
                if error.status_code == 404:
                    results[message_id] = None
                    continue
                hint = self._verdict(error, what)  # raises what is not worth retrying
                failures[message_id] += 1
                self.stats["item_retries"] += 1
                if failures[message_id] >= self.config.max_tries:
                    raise ConnectionFailed(f"{self.where} kept failing on message {message_id} while {what} "
                                           f"({error.status_code} {_reason(error)}). The sync will retry later.")
                retry.append(message_id)
                if error.status_code in (429, 403):
                    throttled.append(hint or 0.0)
            pending += retry  # a later batch: never dropped
            worst = max((failures[message_id] for message_id in retry), default=0)
            if throttled:
                wait = self.backoff(worst, max(throttled))
            elif retry and all(failures[message_id] for message_id in pending):
                wait = self.backoff(worst)
            else:
                wait = 0.0
        return results

    def batch_size(self, cost: int) -> int:
        """At most 50, and no more than the pacer's burst holds, so a small quota is not overrun."""
        return max(1, min(MAX_BATCH, int(self.pacer.capacity // cost)))

    def _batch(self, ids, what, params):
        answers = {}

        def run():
            answers.clear()
            # Not service.new_batch_http_request(): it takes no batch_uri and posts to the rootUrl.
            batch = BatchHttpRequest(batch_uri=self._batch_uri)
            for message_id in ids:
                batch.add(self.messages.get(userId="me", id=message_id, **params),
                          callback=lambda request_id, answer, error: answers.__setitem__(request_id, (answer, error)),
                          request_id=message_id)
            batch.execute()
            return answers

        cost = COSTS["gmail.users.messages.get"] * len(ids)
        self._with_retries(run, cost, what)
        self.stats["batch_items"] += len(ids)
        missing = [message_id for message_id in ids if message_id not in answers]
        if missing:  # a batch answer without some parts: ask for those again
            raise ServerError(f"{self.where} left {len(missing)} part(s) of a batch unanswered while {what}.")
        return answers


def _call_token(client, make):
    """The first token: a refused refresh token is the admin's; a network error is transient."""
    try:
        return make()
    except MailboxError:
        raise
    except _NETWORK_ERRORS as error:
        raise ConnectionFailed(f"{client.where}: the token request failed ({_network_text(error)}). "
                               "The sync will retry.") from error


def _reasons(error: HttpError) -> set[str]:
    """Google's reasons: ``error.errors[].reason`` (v1 shape) and ``error.details[].reason`` (v2)."""
    try:
        body = json.loads(error.content.decode("utf-8"))["error"]
    except (ValueError, KeyError, TypeError, AttributeError):
        return set()
    found = {item.get("reason") for item in body.get("errors") or () if isinstance(item, dict)}
    found |= {item.get("reason") for item in body.get("details") or () if isinstance(item, dict)}
    if isinstance(body.get("status"), str):
        found.add(body["status"])
    return {reason for reason in found if reason}


def _reason(error: HttpError) -> str:
    reasons = sorted(_reasons(error) - {"PERMISSION_DENIED", "UNAUTHENTICATED", "NOT_FOUND"})
    text = error.reason or ""
    return f"{text} [{', '.join(reasons)}]" if reasons else text or "no reason given"


def _retry_after(resp) -> float | None:
    value = resp.get("retry-after") if resp is not None else None
    if not value:
        return None
    if re.fullmatch(r"\d+(\.\d+)?", value):  # seconds; otherwise an HTTP date
        return max(float(value), 0.0)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    return max(when.timestamp() - time.time(), 0.0)


def _network_text(error) -> str:
    if isinstance(error, TimeoutError):
        return "Gmail did not answer in time"
    return f"{type(error).__name__}: {error}"
