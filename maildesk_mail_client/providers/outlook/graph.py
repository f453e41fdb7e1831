"""Microsoft Graph v1.0 over ``requests``: one mailbox's HTTP client.

What every request needs is here, so the rest of the adapter only names
URLs:

- the access token (``auth.TokenSource``), refreshed once when Graph
  answers 401;
- ``Prefer: IdType="ImmutableId"``, so a message keeps its id when it
  moves between folders (the engine then moves its index row);
- at most ``max_concurrency`` (4) requests in flight per mailbox:
  Exchange Online answers the fifth with 429 ``MailboxConcurrency``;
- 429 and 503 wait for ``Retry-After``, other 5xx and network errors back
  off exponentially (with jitter), a bounded number of times, then the run
  ends with ``ConnectionFailed`` and the cron's backoff takes over;
- ``$batch`` (JSON batching, 20 requests each) retries a step that failed
  on its own, never the steps that succeeded; Graph runs up to 4 steps of
  a batch at once, so a batch of n steps holds min(n, 4) of the slots and
  batches go one at a time;
- no wait outlives the run: past ``deadline`` (or ``max_wait`` in all for
  one request) the request ends with ``ConnectionFailed``.
"""

from __future__ import annotations

import collections
import email.utils
import logging
import random
import re
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import requests

from ...application.errors import AuthenticationFailed, ConnectionFailed, ServerError
from .auth import TokenSource, http_session, reconnect_message
from .config import OutlookConfig

_logger = logging.getLogger(__name__)

IMMUTABLE_IDS = 'IdType="ImmutableId"'
BATCH_LIMIT = 20  # Graph's JSON batching takes at most 20 requests per call
#: answers worth asking again: throttled, or the service is having a moment
_RETRIABLE = frozenset({429, 500, 502, 503, 504, 509})


class GraphError(ServerError):
    """Graph answered with an error we do not retry; ``status`` and Graph's ``code`` tell which."""

    def __init__(self, message, status, code=None):
        super().__init__(message)
        self.status = status
        self.code = code or ""


def error_of(body) -> tuple[str, str]:
    """(code, message) of Graph's ``{"error": {"code", "message"}}``, whatever came back."""
    error = body.get("error") if isinstance(body, dict) else None
    if isinstance(error, dict):
        return str(error.get("code") or ""), str(error.get("message") or "")[:300]
    return "", ""


def _json(response):
    try:
        return response.json()
    except ValueError:
        return {}


def retry_after(headers) -> float | None:
    """Seconds from a ``Retry-After`` header (delta-seconds or an HTTP date), None without one."""
    value = (headers or {}).get("Retry-After") or (headers or {}).get("retry-after")
    if value is None:
        return None
    value = str(value).strip()
    if re.fullmatch(r"\d+(\.\d+)?", value):  # seconds; otherwise an HTTP date
        return max(float(value), 0.0)
    try:
        moment = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(moment.timestamp() - time.time(), 0.0)


class GraphClient:
    """The HTTP side of one Outlook mailbox. Thread-safe: a bootstrap fetches pages in parallel."""

    def __init__(self, config: OutlookConfig, tokens: TokenSource | None = None):
        self.config = config
        self.base = config.graph_url
        self.tokens = tokens or TokenSource(config)
        self._session = http_session(config)
        self._slots = threading.BoundedSemaphore(config.max_concurrency)
        self._batch_slots = threading.Lock()  # a batch takes several slots; two must not each hold half
        #: time.monotonic() by which the run must be over (set by the engine through the mailbox): a
        #: wait past it ends the request with ConnectionFailed instead of outliving the run
        self.deadline: float | None = None
        self._pool = None
        self._pool_lock = threading.Lock()
        #: requests sent, by kind ("GET", "POST $batch", "retry 429", ...): benchmarks and tests read it
        self.counts = collections.Counter()

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True)
        self._session.close()

    @property
    def pool(self) -> ThreadPoolExecutor:
        """Threads for requests sent side by side; the semaphore, not the pool, bounds them."""
        with self._pool_lock:
            if self._pool is None:
                self._pool = ThreadPoolExecutor(max_workers=self.config.max_concurrency,
                                                thread_name_prefix="maildesk-graph")
            return self._pool

    def url(self, path: str) -> str:
        return path if path.startswith(("https://", "http://")) else self.base + path

    # -- requests -------------------------------------------------------------

    def get(self, path: str, params=None, page_size: int | None = None, what: str = "reading the mailbox"):
        """The JSON of a GET. Raises GraphError (404, 410, other 4xx) or a transient error."""
        return self.check(self.send("GET", path, params=params, page_size=page_size, what=what), what)

    def send(self, method, path, *, params=None, json=None, page_size=None, what="reading the mailbox",
             stream=False, slots=1) -> requests.Response:
        """One request, retried while the answer says "later"; the last answer is returned as is.

        ``slots``: how many of the mailbox's concurrent requests it is (a ``$batch`` of n steps: up to 4).
        """
        url = self.url(path)
        prefer = IMMUTABLE_IDS + (f", odata.maxpagesize={page_size}" if page_size else "")
        headers = {"Prefer": prefer, "Accept": "application/json"}
        refreshed = renew = False
        token = None
        waited = [0.0]
        for attempt in range(1, self.config.max_tries + 1):
            token = self.tokens.get(force=renew, stale=token)
            renew = False
            headers["Authorization"] = "Bearer " + token
            try:
                with _Held(self._holding(slots), self.config.timeout):
                    self.counts[f"{method} {'$batch' if path.endswith('/$batch') else ''}".strip()] += 1
                    response = self._session.request(method, url, params=params, json=json, headers=headers,
                                                     timeout=self.config.timeout, stream=stream)
            except requests.exceptions.SSLError as error:
                raise ConnectionFailed(f"The TLS handshake with Microsoft Graph ({self.base}) failed while "
                                       f"{what}: {type(error).__name__}. Check the CA bundle.", kind="tls") from error
            except requests.Timeout as error:
                self._pause(attempt, None, f"no answer within {self.config.timeout:g} s", what, "timeout", error,
                            waited)
                continue
            except requests.ConnectionError as error:
                self._pause(attempt, None, "the connection failed", what, "network", error, waited)
                continue
            status = response.status_code
            if status == 401 and not refreshed:
                refreshed = renew = True  # an access token revoked or expired early: one new one, once
                response.close()
                continue
            if status in _RETRIABLE:
                wait = retry_after(response.headers)
                code, _message = error_of(_json(response))
                response.close()
                self.counts[f"retry {status}"] += 1
                self._pause(attempt, wait, f"HTTP {status} {code or ''}".strip(), what, "network", None, waited)
                continue
            return response
        raise AssertionError("unreachable: _pause raises on the last attempt")

    def _holding(self, slots):
        """``slots`` of the mailbox's concurrent requests, taken together (see ``send``)."""
        slots = max(1, min(slots, self.config.max_concurrency))
        if slots == 1:
            return self._slots
        return _Slots(self._slots, self._batch_slots, slots)

    def _pause(self, attempt, wait, reason, what, kind, error, waited):
        """Wait before the next try; on the last one, or when the wait is too long, give up.

        Too long: past the run's deadline (the cron would be killed in its
        sleep, its lease running out), or more than ``max_wait`` in all for
        this request. The run then ends with ConnectionFailed and the
        account's backoff waits instead, holding nothing.
        """
        if wait is None:
            wait = self.config.backoff_base * 2 ** (attempt - 1)
            wait *= 1 + random.random() / 4  # jitter: workers throttled together do not retry together
        late = self.deadline is not None and time.monotonic() + wait > self.deadline
        if attempt >= self.config.max_tries or wait + waited[0] > self.config.max_wait or late:
            later = (" (the run's time is up before the wait it asks for)" if late
                     else f" (it asks to wait {wait:.0f} s)" if wait + waited[0] > self.config.max_wait else "")
            raise ConnectionFailed(f"Microsoft Graph did not serve the request while {what}: {reason}{later}, "
                                   f"after {attempt} tries. The sync will retry later.", kind=kind) from error
        _logger.info("Microsoft Graph: %s while %s; retrying in %.1f s.", reason, what, wait)
        waited[0] += wait
        time.sleep(wait)

    def check(self, response: requests.Response, what: str):
        """The JSON of a successful answer; an error answer as the engine's error."""
        status = response.status_code
        if 200 <= status < 300:
            return _json(response) if status != 204 else {}
        code, message = error_of(_json(response))
        detail = f"{code}: {message}" if code else (message or f"HTTP {status}")
        if status == 401:
            raise AuthenticationFailed(reconnect_message(f"Microsoft Graph refused a fresh access token, {detail}"))
        raise GraphError(f"Microsoft Graph refused {what} (HTTP {status}, {detail}).", status, code)

    # -- JSON batching ----------------------------------------------------------

    def batch(self, requests_by_key: dict, what: str = "reading messages") -> dict:
        """GET many URLs (relative to the version root) through ``$batch``: {key: (status, body)}.

        Steps that come back throttled or failing are sent again, alone
        with the other failed ones, after the wait they ask for; after
        ``max_tries`` rounds a step's last answer is returned as it is, and
        the caller decides (a message not described now is asked for later).
        Batches of one round go out side by side, within the semaphore.
        """
        results = {}
        pending = dict(requests_by_key)
        for attempt in range(1, self.config.max_tries + 1):
            keys = list(pending)
            chunks = [{key: pending[key] for key in keys[start:start + BATCH_LIMIT]}
                      for start in range(0, len(keys), BATCH_LIMIT)]
            # One at a time: Graph runs up to 4 steps of a batch at once against the mailbox,
            # so each batch is 4 of its concurrent requests already.
            answers = [self._batch_once(chunk, what) for chunk in chunks]
            again, wait = {}, 0.0
            for answer in answers:
                for key, (status, body, headers) in answer.items():
                    if status in _RETRIABLE and attempt < self.config.max_tries:
                        again[key] = pending[key]
                        step_wait = retry_after(headers)
                        if step_wait is None:
                            step_wait = self.config.backoff_base * 2 ** (attempt - 1)
                        wait = max(wait, step_wait)
                    else:
                        results[key] = (status, body)
            if not again:
                break
            self.counts["batch steps retried"] += len(again)
            late = self.deadline is not None and time.monotonic() + wait > self.deadline
            if wait > self.config.max_wait or late:
                results.update({key: (429, {}) for key in again})
                break
            _logger.info("Microsoft Graph: %d batch step(s) throttled or failed while %s; retrying them in "
                         "%.1f s.", len(again), what, wait)
            time.sleep(wait)
            pending = again
        return results

    def _batch_once(self, chunk: dict, what: str) -> dict:
        """One ``POST /$batch``: {key: (status, body, headers)} for every step sent."""
        ids = {str(number): key for number, key in enumerate(chunk, 1)}
        payload = {"requests": [
            {"id": number, "method": "GET", "url": chunk[key], "headers": {"Prefer": IMMUTABLE_IDS}}
            for number, key in ids.items()]}
        body = self.check(self.send("POST", "/$batch", json=payload, what=what, slots=len(chunk)), what)
        answers = {}
        for item in body.get("responses") or ():
            key = ids.get(str(item.get("id")))
            if key is not None:
                answers[key] = (int(item.get("status") or 0), item.get("body") or {}, item.get("headers") or {})
        for key in ids.values():
            # A step the answer left out is a step to send again.
            answers.setdefault(key, (503, {}, {}))
        return answers


class _Slots:
    """Several permits of one semaphore, taken under a lock so two takers never each hold part."""

    def __init__(self, semaphore, lock, count):
        self._semaphore, self._lock, self._count = semaphore, lock, count

    def __enter__(self):
        with self._lock:
            for _ in range(self._count):
                self._semaphore.acquire()
        return self

    def __exit__(self, *exc):
        for _ in range(self._count):
            self._semaphore.release()


class _Held:
    """A request's slots, released when it ends; when we gave up waiting for it, only ``linger``
    seconds later: Exchange is still working on it and counts it against the mailbox's 4."""

    def __init__(self, slots, linger):
        self._slots, self._linger = slots, linger

    def __enter__(self):
        self._slots.__enter__()
        return self

    def __exit__(self, kind, error, trace):
        if kind is not None and issubclass(kind, requests.Timeout):
            timer = threading.Timer(self._linger, self._slots.__exit__, (None, None, None))
            timer.daemon = True
            timer.start()
        else:
            self._slots.__exit__(None, None, None)
