"""The state behind the fake Gmail server: one mailbox, its history, quota, tokens and faults.

Tests change the world directly (``add_message``, ``modify``, ``delete_label``...)
and the HTTP layer (gmail_server.py) answers API calls from it, so a test
can make mail arrive between two pages of a listing. One lock guards it all.

Indexes: every label, plus "everything" and "not spam/trash", keeps a list of
``(internalDate, id)`` sorted ascending; listings walk it backwards from a
bisect, so a page costs O(page + log N) whatever the mailbox size. Gmail ids
are 16 hex digits and grow, so comparing them as strings orders them.

History: each change appends one record (one message, one kind) with the next
history id; ``expire_history`` forgets every record so far, and any older
``startHistoryId`` then answers 404, as Gmail does after about a week.
"""

from __future__ import annotations

import base64
import bisect
import collections
import dataclasses
import datetime as dt
import json
import secrets
import threading
import time
from email.message import Message

from . import gmail_mime

SYSTEM_LABELS = (
    "INBOX", "SENT", "DRAFT", "TRASH", "SPAM", "STARRED", "IMPORTANT", "UNREAD", "CHAT",
    "CATEGORY_PERSONAL", "CATEGORY_SOCIAL", "CATEGORY_PROMOTIONS", "CATEGORY_UPDATES", "CATEGORY_FORUMS",
)
# Gmail hides these in its label list; labels.list says so.
_HIDDEN_SYSTEM = {"CHAT", "DRAFT", "IMPORTANT", "SPAM", "STARRED", "TRASH"}

# Quota units per call (https://developers.google.com/gmail/api/reference/quota).
COSTS = {
    "gmail.users.messages.get": 5,
    "gmail.users.messages.list": 5,
    "gmail.users.labels.list": 1,
    "gmail.users.labels.get": 1,
    "gmail.users.getProfile": 1,
    "gmail.users.history.list": 2,
    "gmail.users.messages.send": 100,
}
HISTORY_TYPES = ("messageAdded", "messageDeleted", "labelAdded", "labelRemoved")
_HISTORY_KEYS = {
    "messageAdded": "messagesAdded",
    "messageDeleted": "messagesDeleted",
    "labelAdded": "labelsAdded",
    "labelRemoved": "labelsRemoved",
}
_EVERYTHING = "\0everything"
_NOT_SPAM_TRASH = "\0all"
_FIRST_ID = 0x18F0_0000_0000_0000
_ID_STEP = 0x1D

_STATUS_NAMES = {
    400: "INVALID_ARGUMENT", 401: "UNAUTHENTICATED", 403: "PERMISSION_DENIED", 404: "NOT_FOUND",
    409: "ABORTED", 412: "FAILED_PRECONDITION", 429: "RESOURCE_EXHAUSTED", 500: "INTERNAL",
    501: "NOT_IMPLEMENTED", 503: "UNAVAILABLE", 504: "DEADLINE_EXCEEDED",
}
_DEFAULTS = {  # status: (reason, message)
    400: ("invalidArgument", "Invalid argument."),
    401: ("authError", "Request had invalid authentication credentials. Expected OAuth 2 access token, "
                       "login cookie or other valid authentication credential. See "
                       "https://developers.google.com/identity/sign-in/web/devconsole-project."),
    403: ("forbidden", "The caller does not have permission"),
    404: ("notFound", "Requested entity was not found."),
    429: ("rateLimitExceeded", "Resource has been exhausted (e.g. check quota)."),
    500: ("backendError", "Internal error encountered."),
    503: ("backendError", "The service is currently unavailable."),
}
_RATE_MESSAGES = {
    "rateLimitExceeded": "Quota exceeded for quota metric 'Queries' and limit 'Queries per minute per user' "
                         "of service 'gmail.googleapis.com' for consumer 'project_number:0'.",
    "userRateLimitExceeded": "User-rate limit exceeded.",
}


class ApiError(Exception):
    """An answer in Google's JSON error shape."""

    def __init__(self, status: int, message: str | None = None, *, reason: str | None = None,
                 retry_after: float | None = None, headers: dict | None = None):
        default_reason, default_message = _DEFAULTS.get(status, ("backendError", "Request failed."))
        self.status = status
        self.reason = reason or default_reason
        if message is None:
            message = _RATE_MESSAGES.get(self.reason, default_message)
        super().__init__(message)
        self.message = message
        self.headers = dict(headers or {})
        if retry_after is not None:
            self.headers["Retry-After"] = str(retry_after)

    def body(self) -> dict:
        domain = "usageLimits" if "RateLimit" in self.reason or self.reason.startswith("rateLimit") else "global"
        item = {"message": self.message, "domain": domain, "reason": self.reason}
        if self.status == 401:
            item.update(message="Invalid Credentials", location="Authorization", locationType="header")
        return {"error": {
            "code": self.status,
            "message": self.message,
            "errors": [item],
            "status": _STATUS_NAMES.get(self.status, "UNKNOWN"),
        }}


class TokenError(Exception):
    """An OAuth token endpoint refusal: ``{"error": ..., "error_description": ...}``."""

    def __init__(self, status: int, error: str, description: str):
        super().__init__(description)
        self.status = status
        self.error = error
        self.description = description

    def body(self) -> dict:
        return {"error": self.error, "error_description": self.description}


@dataclasses.dataclass(eq=False)
class _Message:
    id: str
    thread_id: str
    raw: bytes
    labels: set
    internal_date: int
    history_id: int
    _parsed: Message | None = None
    _snippet: str | None = None

    @property
    def key(self):
        return (self.internal_date, self.id)

    def parsed(self) -> Message:
        if self._parsed is None:
            self._parsed = gmail_mime.parse(self.raw)
        return self._parsed

    def snippet(self) -> str:
        if self._snippet is None:
            self._snippet = gmail_mime.snippet(self.parsed())
        return self._snippet

    def ref(self, with_labels=True) -> dict:
        ref = {"id": self.id, "threadId": self.thread_id}
        if with_labels:
            ref["labelIds"] = sorted(self.labels)
        return ref


@dataclasses.dataclass(frozen=True)
class _Record:
    id: int
    kind: str                 # one of HISTORY_TYPES
    labels: frozenset         # the message's labels after the change
    changed: tuple            # labels added/removed (label records only)
    json: dict


def _has_message_id(message, wanted) -> bool:
    """Gmail's ``rfc822msgid:`` operator: the Message-ID header, with or without its angle brackets."""
    value = str(message.parsed().get("Message-ID") or "").strip().strip("<>")
    return bool(value) and value == wanted.strip().strip("<>")


def _ms(value) -> int:
    if isinstance(value, dt.datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=dt.timezone.utc)
        return int(value.timestamp() * 1000)
    return int(value)


def encode_token(data: dict) -> str:
    return base64.urlsafe_b64encode(json.dumps(data, separators=(",", ":")).encode()).decode().rstrip("=")


def decode_token(token: str) -> dict:
    try:
        data = json.loads(gmail_mime.from_b64url(token))
    except ValueError:
        raise ApiError(400, "Invalid pageToken", reason="invalidArgument") from None
    if not isinstance(data, dict):
        raise ApiError(400, "Invalid pageToken", reason="invalidArgument")
    return data


class GmailWorld:
    """One Gmail mailbox. Thread-safe: every public member takes the one lock.

    Faults (``fail_next``, ``fail_batch_item``, ``slow_next``) are consumed when
    they fire; ``calls`` counts every API call by discovery method id (batch
    items too), plus ``"batch"`` per batch HTTP request, ``"token"`` per token
    request and ``"http_requests"`` in total.
    """

    def __init__(self, user_email: str = "user@example.com"):
        self._lock = threading.RLock()
        self.user_email = user_email
        self.history_id = 1000
        self.quota_per_minute = 15000
        self.quota_error = "403"                  # or "429": how a call past the quota is refused
        self.quota_reason = "rateLimitExceeded"   # the 403's reason; "userRateLimitExceeded" also seen
        self.latency = 0.0
        self.rotate_refresh_tokens = False
        self.refresh_token = "1//fake-refresh-" + secrets.token_hex(12)
        self.scope = "https://mail.google.com/"
        self.calls = collections.Counter()
        self.units_spent = 0
        self.refusals = 0
        self._refresh_valid = True
        self._access_tokens: set[str] = set()
        self._used_codes: set[str] = set()
        self._labels: dict[str, dict] = {}
        self._next_label = 1
        for name in SYSTEM_LABELS:
            label = {"id": name, "name": name, "type": "system"}
            if name in _HIDDEN_SYSTEM:
                label.update(messageListVisibility="hide", labelListVisibility="labelHide")
            self._labels[name] = label
        self._messages: dict[str, _Message] = {}
        self._threads = collections.Counter()
        self._index: dict[str, list] = collections.defaultdict(list)
        self._next_id = _FIRST_ID
        self._history: list[_Record] = []
        self._history_ids: list[int] = []
        self._oldest_start = 0
        self._window: collections.deque = collections.deque()
        self._window_units = 0
        self._faults: dict[str, list] = collections.defaultdict(list)
        self._item_faults: dict[str, list] = collections.defaultdict(list)
        self._slow: dict[str, list] = collections.defaultdict(list)

    # ------------------------------------------------------------------ labels

    def add_label(self, name, *, label_id=None, type="user") -> str:
        with self._lock:
            if any(label["name"].lower() == name.lower() for label in self._labels.values()):
                raise ValueError(f"label name exists: {name}")
            if label_id is None:
                label_id = f"Label_{self._next_label}"
                self._next_label += 1
            if label_id in self._labels:
                raise ValueError(f"label id exists: {label_id}")
            label = {"id": label_id, "name": name, "type": type}
            if type == "user":
                label.update(messageListVisibility="show", labelListVisibility="labelShow")
            self._labels[label_id] = label
            return label_id

    def rename_label(self, label_id, name) -> None:
        """Gmail records no history for a rename; a client sees it only in labels.list."""
        with self._lock:
            self._user_label(label_id)["name"] = name

    def delete_label(self, label_id) -> None:
        with self._lock:
            self._user_label(label_id)
            for key in list(self._index.get(label_id, ())):
                message = self._messages[key[1]]
                message.labels.discard(label_id)
                self._record("labelRemoved", message, (label_id,))
            self._index.pop(label_id, None)
            del self._labels[label_id]

    def label_name(self, label_id) -> str:
        with self._lock:
            return self._labels[label_id]["name"]

    def _user_label(self, label_id) -> dict:
        label = self._labels.get(label_id)
        if label is None:
            raise KeyError(label_id)
        if label["type"] == "system":
            raise ValueError(f"system label: {label_id}")
        return label

    def _check_labels(self, labels) -> None:
        unknown = set(labels) - set(self._labels)
        if unknown:
            raise ValueError(f"unknown labels: {sorted(unknown)}")

    # ---------------------------------------------------------------- messages

    def add_message(self, raw: bytes, labels=("INBOX", "UNREAD"), *, internal_date=None, thread_id=None) -> str:
        """Files a message; ``internal_date`` is ms since the epoch or a datetime (naive = UTC), default now."""
        with self._lock:
            labels = set(labels)
            self._check_labels(labels)
            msg_id = f"{self._next_id:016x}"
            self._next_id += _ID_STEP
            date = int(time.time() * 1000) if internal_date is None else _ms(internal_date)
            message = _Message(msg_id, thread_id or msg_id, bytes(raw), labels, date, self.history_id)
            self._messages[msg_id] = message
            self._threads[message.thread_id] += 1
            for key in self._keys_of(labels):
                bisect.insort(self._index[key], message.key)
            self._record("messageAdded", message)
            return msg_id

    def modify(self, msg_id, add=(), remove=()) -> None:
        """One history record for the labels added, one for those removed (only real changes count)."""
        with self._lock:
            message = self._messages[msg_id]
            self._check_labels(add)
            added = sorted(set(add) - message.labels)
            removed = sorted((set(remove) & message.labels) - set(add))
            before = self._keys_of(message.labels)
            message.labels |= set(added)
            message.labels -= set(removed)
            after = self._keys_of(message.labels)
            for key in before - after:
                self._unindex(key, message)
            for key in after - before:
                bisect.insort(self._index[key], message.key)
            if added:
                self._record("labelAdded", message, tuple(added))
            if removed:
                self._record("labelRemoved", message, tuple(removed))

    def trash(self, msg_id) -> None:
        self.modify(msg_id, add=("TRASH",), remove=("INBOX", "SPAM"))

    def delete(self, msg_id) -> None:
        with self._lock:
            message = self._messages.pop(msg_id)
            for key in self._keys_of(message.labels):
                self._unindex(key, message)
            self._threads[message.thread_id] -= 1
            if not self._threads[message.thread_id]:
                del self._threads[message.thread_id]
            self._record("messageDeleted", message)

    def message_ids(self, label_id=None) -> set[str]:
        """Truth for assertions: every message, those of a label, or with "ALL" those not in SPAM/TRASH."""
        with self._lock:
            if label_id is None:
                return set(self._messages)
            key = _NOT_SPAM_TRASH if label_id == "ALL" else label_id
            return {msg_id for _, msg_id in self._index.get(key, ())}

    def labels_of(self, msg_id) -> set[str]:
        with self._lock:
            return set(self._messages[msg_id].labels)

    def raw_of(self, msg_id) -> bytes:
        with self._lock:
            return self._messages[msg_id].raw

    def _keys_of(self, labels) -> set:
        keys = set(labels) | {_EVERYTHING}
        if not labels & {"SPAM", "TRASH"}:
            keys.add(_NOT_SPAM_TRASH)
        return keys

    def _unindex(self, key, message) -> None:
        index = self._index[key]
        position = bisect.bisect_left(index, message.key)
        if position < len(index) and index[position] == message.key:
            del index[position]

    # ----------------------------------------------------------------- history

    def _record(self, kind, message, changed=()) -> None:
        self.history_id += 1
        message.history_id = self.history_id
        entry = {"message": message.ref()}
        if changed:
            entry["labelIds"] = list(changed)
        record = {
            "id": str(self.history_id),
            "messages": [message.ref(with_labels=False)],
            _HISTORY_KEYS[kind]: [entry],
        }
        self._history.append(_Record(self.history_id, kind, frozenset(message.labels), tuple(changed), record))
        self._history_ids.append(self.history_id)

    def expire_history(self) -> None:
        """Every startHistoryId below the current history id now answers 404."""
        with self._lock:
            self._history.clear()
            self._history_ids.clear()
            self._oldest_start = self.history_id

    # ------------------------------------------------------------------ faults

    def fail_next(self, method: str, status: int, *, reason=None, retry_after=None, count=1) -> None:
        with self._lock:
            self._faults[method].append([status, reason, retry_after, count])

    def fail_batch_item(self, msg_id: str, status=500, count=1) -> None:
        with self._lock:
            self._item_faults[msg_id].append([status, count])

    def slow_next(self, method: str, seconds: float, count=1) -> None:
        with self._lock:
            self._slow[method].append([seconds, count])

    @staticmethod
    def _take(queue):
        if not queue:
            return None
        fault = queue[0]
        fault[-1] -= 1
        if fault[-1] <= 0:
            queue.pop(0)
        return fault

    def take_fault(self, method) -> None:
        """Raises the next queued failure of ``method``, if any."""
        with self._lock:
            fault = self._take(self._faults.get(method))
        if fault:
            status, reason, retry_after, _ = fault
            raise ApiError(status, reason=reason, retry_after=retry_after)

    def take_item_fault(self, msg_id) -> None:
        with self._lock:
            fault = self._take(self._item_faults.get(msg_id))
        if fault:
            raise ApiError(fault[0])

    def take_delay(self, method) -> float:
        with self._lock:
            slow = self._take(self._slow.get(method))
        return slow[0] if slow else 0.0

    def count(self, name) -> None:
        with self._lock:
            self.calls[name] += 1

    # ------------------------------------------------------------------- quota

    def charge(self, method) -> None:
        """Spends the method's units in the rolling minute, or refuses the call as Gmail does."""
        cost = COSTS.get(method, 5)
        now = time.monotonic()
        with self._lock:
            while self._window and self._window[0][0] <= now - 60:
                self._window_units -= self._window.popleft()[1]
            if self._window_units + cost > self.quota_per_minute:
                self.refusals += 1
                if str(self.quota_error) == "429":
                    raise ApiError(429, reason="rateLimitExceeded")
                raise ApiError(403, reason=self.quota_reason)
            self._window.append((now, cost))
            self._window_units += cost
            self.units_spent += cost

    # ------------------------------------------------------------------ tokens

    def issue_access_token(self) -> str:
        with self._lock:
            token = "ya29.fake-" + secrets.token_urlsafe(24)
            self._access_tokens.add(token)
            return token

    def expire_access_tokens(self) -> None:
        with self._lock:
            self._access_tokens.clear()

    def revoke_refresh_token(self) -> None:
        with self._lock:
            self._refresh_valid = False

    def authenticate(self, authorization: str | None) -> None:
        scheme, _, token = (authorization or "").partition(" ")
        with self._lock:
            valid = scheme.lower() == "bearer" and token.strip() in self._access_tokens
        if not valid:
            raise ApiError(401, headers={
                "WWW-Authenticate": 'Bearer realm="https://accounts.google.com/", error="invalid_token"'})

    def grant(self, form: dict) -> dict:
        """The token endpoint: a refresh_token or authorization_code grant."""
        grant_type = form.get("grant_type", "")
        with self._lock:
            self.calls["token"] += 1
            if not form.get("client_id"):
                raise TokenError(400, "invalid_request", "Could not determine client ID from request.")
            answer = {"expires_in": 3599, "token_type": "Bearer", "scope": self.scope}
            if grant_type == "refresh_token":
                if not form.get("refresh_token"):
                    raise TokenError(400, "invalid_request", "Missing required parameter: refresh_token")
                if not self._refresh_valid or form["refresh_token"] != self.refresh_token:
                    raise TokenError(400, "invalid_grant", "Token has been expired or revoked.")
                if self.rotate_refresh_tokens:
                    self.refresh_token = "1//fake-refresh-" + secrets.token_hex(12)
                    answer["refresh_token"] = self.refresh_token
            elif grant_type == "authorization_code":
                code = form.get("code")
                if not code:
                    raise TokenError(400, "invalid_request", "Missing required parameter: code")
                if code in self._used_codes:
                    raise TokenError(400, "invalid_grant", "Bad Request")
                self._used_codes.add(code)
                # A new consent gives a new refresh token and revives a revoked account.
                self.refresh_token = "1//fake-refresh-" + secrets.token_hex(12)
                self._refresh_valid = True
                answer["refresh_token"] = self.refresh_token
            else:
                raise TokenError(400, "unsupported_grant_type", f"Invalid grant_type: {grant_type}")
            answer["access_token"] = self.issue_access_token()
            return answer

    # --------------------------------------------------------------- API reads

    def get_profile(self) -> dict:
        with self._lock:
            return {
                "emailAddress": self.user_email,
                "messagesTotal": len(self._messages),
                "threadsTotal": len(self._threads),
                "historyId": str(self.history_id),
            }

    def list_labels(self) -> dict:
        with self._lock:
            return {"labels": [dict(label) for label in self._labels.values()]}

    def get_label(self, label_id) -> dict:
        with self._lock:
            label = self._labels.get(label_id)
            if label is None:
                raise ApiError(404)
            members = [self._messages[msg_id] for _, msg_id in self._index.get(label_id, ())]
            unread = [message for message in members if "UNREAD" in message.labels]
            return dict(
                label,
                messagesTotal=len(members),
                messagesUnread=len(unread),
                threadsTotal=len({message.thread_id for message in members}),
                threadsUnread=len({message.thread_id for message in unread}),
            )

    def list_messages(self, label_ids=(), *, include_spam_trash=False, max_results=100, page_token=None,
                      rfc822msgid=None) -> dict:
        """Newest first by (internalDate, id); the page token is the last key returned, so mail arriving
        while a client pages (newer keys) never shifts the pages still to come."""
        max_results = max(1, min(int(max_results or 100), 500))
        with self._lock:
            unknown = [label for label in label_ids if label not in self._labels]
            if unknown:
                raise ApiError(400, f"Invalid label: {unknown[0]}", reason="invalidArgument")
            if label_ids:
                candidates = [self._index.get(label, []) for label in label_ids]
                index = min(candidates, key=len)
            else:
                index = self._index.get(_EVERYTHING if include_spam_trash else _NOT_SPAM_TRASH, [])
            required = set(label_ids)
            # As Gmail: without includeSpamTrash, Spam and Trash stay out unless asked for by label.
            hidden = set() if include_spam_trash or required & {"SPAM", "TRASH"} else {"SPAM", "TRASH"}
            position = len(index)
            if page_token:
                after = decode_token(page_token)
                try:
                    position = bisect.bisect_left(index, (int(after["d"]), str(after["i"])))
                except (KeyError, TypeError, ValueError):
                    raise ApiError(400, "Invalid pageToken", reason="invalidArgument") from None
            found = []
            while position > 0 and len(found) <= max_results:
                position -= 1
                message = self._messages[index[position][1]]
                if (required <= message.labels and not hidden & message.labels
                        and (rfc822msgid is None or _has_message_id(message, rfc822msgid))):
                    found.append(message)
            answer = {}
            if found[:max_results]:
                answer["messages"] = [message.ref(with_labels=False) for message in found[:max_results]]
            if len(found) > max_results:
                last = found[max_results - 1]
                answer["nextPageToken"] = encode_token({"d": last.internal_date, "i": last.id})
            answer["resultSizeEstimate"] = len(index) if len(required) <= 1 else len(found)
            return answer

    def get_message(self, msg_id, fmt="full", metadata_headers=None) -> dict:
        if fmt not in ("minimal", "metadata", "full", "raw"):
            raise ApiError(400, f"Invalid value at 'format' ({fmt})", reason="invalidArgument")
        if len(msg_id) != 16 or any(char not in "0123456789abcdef" for char in msg_id):
            raise ApiError(400, "Invalid id value", reason="invalidArgument")
        with self._lock:
            message = self._messages.get(msg_id)
            if message is None:
                raise ApiError(404)
            answer = message.ref()
            answer.update(
                snippet=message.snippet(),
                sizeEstimate=len(message.raw),
                historyId=str(message.history_id),
                internalDate=str(message.internal_date),
            )
        if fmt == "raw":
            answer["raw"] = gmail_mime.b64url(message.raw)
        elif fmt in ("metadata", "full"):
            answer["payload"] = gmail_mime.payload(message.parsed(), full=fmt == "full", wanted=metadata_headers)
        return answer

    def send(self, raw: bytes, thread_id=None) -> dict:
        with self._lock:
            if thread_id and thread_id not in self._threads:
                raise ApiError(404)
        msg_id = self.add_message(raw, ("SENT",), thread_id=thread_id)
        with self._lock:
            return self._messages[msg_id].ref()

    def list_history(self, start, *, history_types=(), label_id=None, max_results=100, page_token=None) -> dict:
        if start in (None, ""):
            raise ApiError(400, "Missing startHistoryId", reason="invalidArgument")
        try:
            start = int(start)
        except ValueError:
            raise ApiError(400, "Invalid startHistoryId", reason="invalidArgument") from None
        unknown = set(history_types) - set(HISTORY_TYPES)
        if unknown:
            raise ApiError(400, f"Invalid value at 'history_types' ({sorted(unknown)[0]})",
                           reason="invalidArgument")
        types = set(history_types or HISTORY_TYPES)
        max_results = max(1, min(int(max_results or 100), 500))
        with self._lock:
            after = start
            if page_token:
                try:
                    after = int(decode_token(page_token)["h"])
                except (KeyError, TypeError, ValueError):
                    raise ApiError(400, "Invalid pageToken", reason="invalidArgument") from None
            if start < self._oldest_start or after < self._oldest_start:
                raise ApiError(404)
            position = bisect.bisect_right(self._history_ids, after)
            found = []
            while position < len(self._history) and len(found) <= max_results:
                record = self._history[position]
                position += 1
                if record.kind in types and (
                        label_id is None or label_id in record.labels or label_id in record.changed):
                    found.append(record)
            answer = {}
            if found[:max_results]:
                answer["history"] = [record.json for record in found[:max_results]]
            if len(found) > max_results:
                answer["nextPageToken"] = encode_token({"h": found[max_results - 1].id})
            answer["historyId"] = str(self.history_id)
            return json.loads(json.dumps(answer))  # a copy: records are shared
