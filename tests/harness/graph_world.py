"""The state behind the fake Graph + Azure AD server: one mailbox, its tokens, its faults.

Everything is in memory under one lock. Every mutation of a message takes the
next change number (``seq``) and is logged in each folder it touches, which is
all a delta query needs: a delta token is "folder F as of change number S", and
the answer to it is the net state of every message logged in F after S.
Ids are immutable (as with ``Prefer: IdType="ImmutableId"``): a move keeps the id.
"""

import base64
import bisect
import collections
import datetime
import hashlib
import os
import re
import threading
import uuid
from dataclasses import dataclass, field

from .graph_mail import Attachment, StoredMessage, as_datetime, fields_from_mime, flag_status

WELL_KNOWN = (
    ("inbox", "Inbox"), ("drafts", "Drafts"), ("sentitems", "Sent Items"), ("deleteditems", "Deleted Items"),
    ("junkemail", "Junk Email"), ("archive", "Archive"), ("outbox", "Outbox"),
    ("conversationhistory", "Conversation History"),
)
EXPIRY_CODES = {
    "410": "SyncStateNotFound", "syncStateNotFound": "syncStateNotFound", "resyncRequired": "resyncRequired",
}
DEFAULT_FAULT_CODES = {
    400: "BadRequest", 401: "InvalidAuthenticationToken", 403: "ErrorAccessDenied", 404: "ErrorItemNotFound",
    409: "ErrorIrresolvableConflict", 410: "SyncStateNotFound", 429: "TooManyRequests",
    500: "InternalServerError", 502: "BadGateway", 503: "ServiceUnavailable", 504: "GatewayTimeout",
}
_RESERVED_SCOPES = {"openid", "profile", "offline_access", "email"}


class GraphError(Exception):
    """An answer in Graph's error shape: {"error": {"code", "message"}}."""

    def __init__(self, status, code, message, headers=None):
        super().__init__(f"{status} {code}: {message}")
        self.status, self.code, self.message, self.headers = status, code, message, headers or {}

    def body(self):
        now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S")
        return {"error": {"code": self.code, "message": self.message,
                          "innerError": {"date": now, "request-id": str(uuid.uuid4()),
                                         "client-request-id": str(uuid.uuid4())}}}


def _random_id(prefix, tail):
    return prefix + base64.urlsafe_b64encode(os.urandom(33)).decode("ascii") + tail


@dataclass
class Folder:
    id: str
    name: str
    parent_id: str | None
    hidden: bool = False
    well_known: str | None = None
    messages: dict = field(default_factory=dict)   # id -> None (a set that keeps arrival order)
    log_seqs: list = field(default_factory=list)   # change numbers, ascending
    log_ids: list = field(default_factory=list)    # the message each change touched
    expired_below: int = 0                         # delta tokens from before this change number are refused
    expiry: tuple = (410, "SyncStateNotFound")
    index: list | None = None                      # (received timestamp, id) ascending, rebuilt on demand


@dataclass
class _Rule:
    pattern: re.Pattern
    remaining: int
    status: int = 0
    code: str | None = None
    retry_after: float | None = None
    seconds: float = 0.0


class GraphWorld:
    """One Outlook mailbox with its Azure AD app registration; see CONTRACT.md for the public API."""

    def __init__(self, user_email="user@example.com"):
        self._lock = threading.RLock()
        self._slot_lock = threading.Lock()
        self.user_email = user_email
        self.user_id = str(uuid.uuid4())
        self.latency = 0.0
        self.max_concurrency = 4
        # Graph may describe an updated message in a delta by its changed properties only;
        # True: a message already in the folder before the window comes as id + isRead + flag.
        self.sparse_delta_updates = False
        self.client_id = str(uuid.uuid4())
        self.client_secret = "fake~" + base64.urlsafe_b64encode(os.urandom(24)).decode("ascii")
        self.refresh_token = self._new_refresh_token()
        self._refresh_error = None
        self._access_tokens = set()
        self._codes = set()
        # Accounting for assertions and benchmarks.
        self.requests = collections.Counter()      # "GET /me/mailFolders/{id}/messages" -> count
        self.immutable_id = collections.Counter()  # "with"/"without" per HTTP call, "step_with"/"step_without"
        self.token_requests = []                   # (grant_type, scope) per token call; never the tokens
        self.sent = []                             # ids of messages filed by sendMail
        self.peak_concurrency = 0
        self.throttled = 0
        self._active = 0
        self._fails, self._slows = [], []
        self.seq = 0
        self._clock = datetime.datetime(2025, 1, 1, tzinfo=datetime.timezone.utc)
        self._folders = {}
        self._messages = {}
        self._well_known = {}
        self.root_id = self._add_folder("Top of Information Store", None)
        for name, display in WELL_KNOWN:
            self._well_known[name] = self._add_folder(display, self.root_id, well_known=name)

    # ------------------------------------------------------------------ folders
    def _add_folder(self, name, parent_id, *, hidden=False, well_known=None):
        folder_id = _random_id("AQMkAD", "AAAA")
        self._folders[folder_id] = Folder(folder_id, name, parent_id, hidden, well_known)
        return folder_id

    def well_known(self, name):
        with self._lock:
            return self._well_known[name.lower()]

    def add_folder(self, name, parent_id=None, *, hidden=False):
        with self._lock:
            parent = self._folder(parent_id) if parent_id else self._folders[self.root_id]
            return self._add_folder(name, parent.id, hidden=hidden)

    def rename_folder(self, folder_id, name):
        with self._lock:
            self._folder(folder_id).name = name

    def move_folder(self, folder_id, parent_id):
        with self._lock:
            self._folder(folder_id).parent_id = self._folder(parent_id).id

    def delete_folder(self, folder_id):
        with self._lock:
            folder = self._folder(folder_id)
            for child in [f.id for f in self._folders.values() if f.parent_id == folder.id]:
                self.delete_folder(child)
            for msg_id in list(folder.messages):
                del self._messages[msg_id]
            del self._folders[folder.id]
            if folder.well_known:
                del self._well_known[folder.well_known]

    def _folder(self, ref):
        """The folder for an id or a well-known name, or Graph's 404."""
        ref = str(ref)
        if ref.lower() == "msgfolderroot":
            return self._folders[self.root_id]
        folder = self._folders.get(ref) or self._folders.get(self._well_known.get(ref.lower(), ""))
        if folder is None:
            raise GraphError(404, "ErrorItemNotFound", "The specified object was not found in the store.")
        return folder

    def folder_json(self, folder):
        children = sum(1 for f in self._folders.values() if f.parent_id == folder.id)
        unread = sum(1 for m in folder.messages if not self._messages[m].is_read)
        return {"id": folder.id, "displayName": folder.name, "parentFolderId": folder.parent_id,
                "childFolderCount": children, "unreadItemCount": unread,
                "totalItemCount": len(folder.messages), "isHidden": folder.hidden}

    def get_folder(self, ref):
        with self._lock:
            return self.folder_json(self._folder(ref))

    def list_folders(self, parent_ref, *, hidden, skip, top):
        """One page of a folder's children, by display name; (folders JSON, more?)."""
        with self._lock:
            parent = self._folder(parent_ref) if parent_ref else self._folders[self.root_id]
            children = sorted((f for f in self._folders.values()
                               if f.parent_id == parent.id and (hidden or not f.hidden)),
                              key=lambda f: (f.name.casefold(), f.id))
            return [self.folder_json(f) for f in children[skip:skip + top]], len(children) > skip + top

    # ----------------------------------------------------------------- messages
    def _log(self, folder, msg_id):
        folder.log_seqs.append(self.seq)
        folder.log_ids.append(msg_id)

    def _tick(self):
        self.seq += 1
        return datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0)

    def add_message(self, folder_id, *, subject="", sender="a@example.com", to=("user@example.com",),
                    received=None, is_read=False, flagged=False, body="", attachments=(),
                    internet_message_id=None, mime=None, cc=(), in_reply_to=None, references=None,
                    is_draft=False, conversation_id=None, body_type="text"):
        """File a message; with ``mime`` its headers, body and attachments come from the bytes."""
        fields = {"subject": subject, "sender": sender, "to": tuple(to), "cc": tuple(cc), "body": body,
                  "body_type": body_type, "internet_message_id": internet_message_id,
                  "in_reply_to": in_reply_to, "references": references}
        parts = [self._attachment(item) for item in attachments]
        if mime is not None:
            parsed = fields_from_mime(mime)
            date = parsed.pop("date")
            received = received or date
            parts = [Attachment(_random_id("AAMkAGAt", "="), name, ctype, data, inline, cid)
                     for name, ctype, data, inline, cid in parsed.pop("attachments")]
            fields.update(parsed)
        with self._lock:
            folder = self._folder(folder_id)
            if received is None:
                self._clock += datetime.timedelta(minutes=1)
                received = self._clock
            msg_id = _random_id("AAkALgAAAAAAHYQDEapmEc2byACqAC-EWg0A", "AAA=")
            fields["internet_message_id"] = fields["internet_message_id"] or f"<{uuid.uuid4().hex}@example.com>"
            thread = re.sub(r"^((re|fwd?|aw|tr)\s*:\s*)+", "", fields["subject"], flags=re.IGNORECASE).strip()
            message = StoredMessage(
                id=msg_id, folder_id=folder.id, received=as_datetime(received), is_read=is_read,
                flag=flag_status(flagged), is_draft=is_draft, attachments=parts, raw=mime,
                conversation_id=conversation_id or "AAQkAD" + hashlib.sha1(thread.encode()).hexdigest(),
                **fields,
            )
            message.modified = self._tick()
            message.arrived = self.seq
            self._messages[msg_id] = message
            folder.messages[msg_id] = None
            folder.index = None
            self._log(folder, msg_id)
            return msg_id

    @staticmethod
    def _attachment(item):
        if isinstance(item, Attachment):
            return item
        if isinstance(item, dict):
            name, ctype, data = item["name"], item.get("content_type", "application/octet-stream"), item["data"]
        elif len(item) == 2:
            (name, data), ctype = item, "application/octet-stream"
        else:
            name, ctype, data = item
        return Attachment(_random_id("AAMkAGAt", "="), name, ctype, data)

    def _message(self, msg_id):
        message = self._messages.get(msg_id)
        if message is None:
            raise GraphError(404, "ErrorItemNotFound", "The specified object was not found in the store.")
        return message

    def update(self, msg_id, *, is_read=None, flagged=None):
        with self._lock:
            message = self._message(msg_id)
            if is_read is not None:
                message.is_read = bool(is_read)
            if flagged is not None:
                message.flag = flag_status(flagged)
            message.change += 1
            message.modified = self._tick()
            self._log(self._folders[message.folder_id], msg_id)

    def move(self, msg_id, folder_id):
        with self._lock:
            message, target = self._message(msg_id), self._folder(folder_id)
            source = self._folders[message.folder_id]
            if source is target:
                return
            del source.messages[msg_id]
            target.messages[msg_id] = None
            source.index = target.index = None
            message.folder_id = target.id
            message.change += 1
            message.modified = self._tick()
            message.arrived = self.seq
            self._log(source, msg_id)
            self._log(target, msg_id)

    def delete(self, msg_id):
        with self._lock:
            message = self._message(msg_id)
            folder = self._folders[message.folder_id]
            del folder.messages[msg_id]
            del self._messages[msg_id]
            folder.index = None
            self._tick()
            self._log(folder, msg_id)

    def message_ids(self, folder_id=None):
        with self._lock:
            if folder_id is None:
                return set(self._messages)
            return set(self._folder(folder_id).messages)

    def folder_of(self, msg_id):
        with self._lock:
            return self._message(msg_id).folder_id

    def message_json(self, msg_id, select=None, *, with_size=False):
        with self._lock:
            return self._message(msg_id).json(select, with_size=with_size)

    def message_mime(self, msg_id):
        with self._lock:
            return self._message(msg_id).mime()

    def attachments_json(self, msg_id):
        with self._lock:
            message = self._message(msg_id)
            return [item.json(message._property("lastModifiedDateTime")) for item in message.attachments]

    def file_sent(self, fields, mime, save):
        """What sendMail leaves behind: a read copy in Sent Items (unless saveToSentItems is false)."""
        if not save:
            return None
        msg_id = self.add_message("sentitems", sender=self.user_email, is_read=True, mime=mime,
                                  received=datetime.datetime.now(datetime.timezone.utc), **fields)
        with self._lock:
            self.sent.append(msg_id)
        return msg_id

    def create_draft(self, mime):
        """POST /me/messages with MIME: a draft in Drafts, its Message-ID kept."""
        return self.add_message("drafts", sender=self.user_email, is_read=True, mime=mime, is_draft=True,
                                received=datetime.datetime.now(datetime.timezone.utc))

    def send_draft(self, msg_id):
        """POST /me/messages/{id}/send: the draft leaves and lands in Sent Items with the same immutable id."""
        with self._lock:
            message = self._message(msg_id)
            if not message.is_draft:
                raise GraphError(400, "ErrorInvalidOperation", "Only draft messages can be sent.")
            message.is_draft = False
            self.move(msg_id, self.well_known("sentitems"))
            self.sent.append(msg_id)

    def find_internet_id(self, internet_message_id):
        """Ids of every message with this Message-ID, in any folder (``$filter=internetMessageId eq``)."""
        with self._lock:
            return [msg_id for msg_id, message in self._messages.items()
                    if message.internet_message_id == internet_message_id]

    def sent_internet_ids(self):
        """How many times each Message-ID was sent (sendMail or a draft's send): the tests' truth."""
        with self._lock:
            return collections.Counter(self._messages[msg_id].internet_message_id if msg_id in self._messages
                                       else None for msg_id in self.sent)

    # ------------------------------------------------------------------ listing
    def _index(self, folder):
        if folder.index is None:
            folder.index = sorted((self._messages[m].received.timestamp(), m) for m in folder.messages)
        return folder.index

    def _page(self, folder, after, descending, limit):
        """Keys after ``after`` in the given order, at most ``limit``; and whether more follow."""
        keys = self._index(folder)
        if descending:
            end = bisect.bisect_left(keys, tuple(after)) if after else len(keys)
            return keys[max(0, end - limit):end][::-1], end > limit
        start = bisect.bisect_right(keys, tuple(after)) if after else 0
        return keys[start:start + limit], start + limit < len(keys)

    def message_page(self, folder_ref, *, before, descending, skip, limit, select, with_size):
        """One offset page of the folder (received at or before ``before``, a timestamp, when given);
        (messages JSON, more?)."""
        with self._lock:
            folder = self._folder(folder_ref)
            keys = self._index(folder)
            if before is not None:
                keys = keys[:bisect.bisect_right(keys, (before, "\uffff"))]
            if descending:
                keys = keys[::-1]
            chosen = keys[skip:skip + limit]
            values = [self._messages[m].json(select, with_size=with_size) for _, m in chosen]
            return values, skip + limit < len(keys)

    # -------------------------------------------------------------------- delta
    def expire_delta(self, folder_id, kind="410", status=410):
        """Every delta/skip token of the folder issued so far now answers ``status`` with the kind's code."""
        with self._lock:
            folder = self._folder(folder_id)
            self.seq += 1
            folder.expired_below = self.seq
            folder.expiry = (status, EXPIRY_CODES.get(kind, kind))

    def delta(self, folder_ref, state, select, limit):
        """One delta page: (items, next state or None, delta state or None).

        States: None (a fresh round), "latest", ["i", folder, S, last key, select] (the first
        round, newest first), ["d", folder, S, select] (a deltaLink) and ["c", folder, S, T,
        offset, select] (a later page of the changes between S and T).
        """
        with self._lock:
            folder = self._folder(folder_ref)
            if state == "latest":
                return [], None, ["d", folder.id, self.seq, select]
            if state is None:
                state = ["i", folder.id, self.seq, None, select]
            try:
                kind, token_folder, base = state[0], state[1], int(state[2])
            except (IndexError, KeyError, TypeError, ValueError):
                raise GraphError(400, "syncStateInvalid", "The sync state is invalid.") from None
            if token_folder != folder.id or kind not in ("i", "d", "c"):
                raise GraphError(400, "syncStateInvalid", "The sync state does not belong to this folder.")
            if base < folder.expired_below:
                status, code = folder.expiry
                raise GraphError(status, code, "The sync state generation is no longer valid; resync required.")
            if kind == "i":
                select = state[4]
                keys, more = self._page(folder, state[3], True, limit)
                items = [self._messages[m].json(select, odata_type=True) for _, m in keys]
                if more:
                    return items, ["i", folder.id, base, list(keys[-1]), select], None
                return items, None, ["d", folder.id, base, select]
            if kind == "d":
                since, until, offset, select = base, self.seq, 0, state[3]
            else:
                since, until, offset, select = base, int(state[3]), int(state[4]), state[5]
            changed = self._changed(folder, since, until)
            items = []
            for msg_id in changed[offset:offset + limit]:
                message = self._messages.get(msg_id)
                if message is not None and message.folder_id == folder.id:
                    sparse = self.sparse_delta_updates and message.arrived <= since
                    items.append(message.json(["isRead", "flag"] if sparse else select, odata_type=True))
                else:
                    items.append({"@odata.type": "#microsoft.graph.message", "id": msg_id,
                                  "@removed": {"reason": "deleted"}})
            if offset + limit < len(changed):
                return items, ["c", folder.id, since, until, offset + limit, select], None
            return items, None, ["d", folder.id, until, select]

    @staticmethod
    def _changed(folder, since, until):
        """Ids logged in (since, until], each once, ordered by its last change there."""
        start = bisect.bisect_right(folder.log_seqs, since)
        end = bisect.bisect_right(folder.log_seqs, until)
        order = {}
        for msg_id in folder.log_ids[start:end]:
            order.pop(msg_id, None)
            order[msg_id] = None
        return list(order)

    def count(self, counter, key):
        """Counters are bumped from many handler threads; Counter's += is not atomic."""
        with self._slot_lock:
            counter[key] += 1

    # ------------------------------------------------------------ faults, slots
    def fail_next(self, path_regex, status, *, code=None, retry_after=None, count=1):
        """The next ``count`` calls whose path (and query) matches answer ``status`` in Graph's error shape."""
        with self._lock:
            self._fails.append(_Rule(re.compile(path_regex), count, status, code, retry_after))

    def slow_next(self, path_regex, seconds, count=1):
        with self._lock:
            self._slows.append(_Rule(re.compile(path_regex), count, seconds=seconds))

    def _take(self, rules, target):
        with self._lock:
            for rule in rules:
                if rule.remaining > 0 and rule.pattern.search(target):
                    rule.remaining -= 1
                    return rule
        return None

    def take_slow(self, target):
        rule = self._take(self._slows, target)
        return rule.seconds if rule else 0.0

    def take_fault(self, target):
        """The GraphError a matching fail_next rule asks for, or None."""
        rule = self._take(self._fails, target)
        if rule is None:
            return None
        headers = {"Retry-After": str(rule.retry_after)} if rule.retry_after is not None else {}
        code = rule.code or DEFAULT_FAULT_CODES.get(rule.status, "UnknownError")
        return GraphError(rule.status, code, f"Injected fault ({code}).", headers)

    def admit(self, slots=1):
        """Take ``slots`` mailbox slots (a $batch: one per step Graph runs at once, up to 4);
        False (and counted as throttled) past max_concurrency."""
        with self._slot_lock:
            self._active += slots
            self.peak_concurrency = max(self.peak_concurrency, self._active)
            if self._active > self.max_concurrency:
                self._active -= slots
                self.throttled += 1
                return False
            return True

    def admit_upto(self, wanted):
        """A $batch: as many of ``wanted`` slots as are free (0: none, the batch is refused);
        a batch that gets fewer than it wanted has its other steps of the first wave refused."""
        with self._slot_lock:
            self.peak_concurrency = max(self.peak_concurrency, self._active + wanted)
            got = max(0, min(wanted, self.max_concurrency - self._active))
            self._active += got
            if got < wanted:
                self.throttled += 1
            return got

    def release(self, slots=1):
        with self._slot_lock:
            self._active -= slots

    # ------------------------------------------------------------------- tokens
    @staticmethod
    def _new_refresh_token():
        return "1.AQoA" + base64.urlsafe_b64encode(os.urandom(48)).decode("ascii")

    def issue_access_token(self):
        """A valid access token without going through the token endpoint (for tests that skip msal)."""
        token = "eyJ0eXAiOiJKV1QiLCJub25jZSI6" + base64.urlsafe_b64encode(os.urandom(48)).decode("ascii")
        with self._lock:
            self._access_tokens.add(token)
        return token

    def access_token_valid(self, token):
        with self._lock:
            return token in self._access_tokens

    def expire_access_tokens(self):
        """Every access token issued so far now answers 401 (as after its hour is up)."""
        with self._lock:
            self._access_tokens.clear()

    def revoke_refresh_token(self, error="invalid_grant"):
        """The token endpoint refuses every refresh with ``error`` until a new authorization code is redeemed."""
        with self._lock:
            self._refresh_error = error

    def new_authorization_code(self):
        code = "0.AQoA" + base64.urlsafe_b64encode(os.urandom(24)).decode("ascii")
        with self._lock:
            self._codes.add(code)
        return code

    def grant(self, form, basic=None):
        """The token endpoint: (status, body) for a form-decoded POST."""
        client_id, secret = basic or (form.get("client_id"), form.get("client_secret"))
        grant_type = form.get("grant_type", "")
        scopes = form.get("scope", "").split()
        with self._lock:
            self.token_requests.append((grant_type, " ".join(scopes)))
            if client_id != self.client_id:
                return 400, _aad_error("unauthorized_client", 700016,
                                       f"Application with identifier '{client_id}' was not found in the directory.")
            if secret != self.client_secret:
                return 401, _aad_error("invalid_client", 7000215, "Invalid client secret provided.")
            if grant_type == "refresh_token":
                if self._refresh_error == "interaction_required":
                    return 400, _aad_error(
                        "interaction_required", 50076,
                        "Due to a configuration change made by your administrator, or because you moved to a new "
                        "location, you must use multi-factor authentication to access the resource.")
                if self._refresh_error or form.get("refresh_token") != self.refresh_token:
                    return 400, _aad_error("invalid_grant", 70000,
                                           "The provided value for the 'refresh_token' is not valid.")
            elif grant_type == "authorization_code":
                if form.get("code") not in self._codes:
                    return 400, _aad_error("invalid_grant", 70000,
                                           "The provided value for the 'code' parameter is not valid.")
                self._codes.discard(form["code"])
                self._refresh_error = None
            else:
                return 400, _aad_error("unsupported_grant_type", 70003,
                                       f"The app requested an unsupported grant type '{grant_type}'.")
            # Rotation: the old refresh token dies with this answer, so losing it means reconnecting.
            self.refresh_token = self._new_refresh_token()
            granted = [s for s in scopes if s.lower() not in _RESERVED_SCOPES] or ["https://graph.microsoft.com/.default"]
            return 200, {"token_type": "Bearer", "scope": " ".join(granted), "expires_in": 3599,
                         "ext_expires_in": 3599, "access_token": self.issue_access_token(),
                         "refresh_token": self.refresh_token}


def _aad_error(error, number, text):
    now = datetime.datetime.now(datetime.timezone.utc)
    trace, correlation = str(uuid.uuid4()), str(uuid.uuid4())
    stamp = now.strftime("%Y-%m-%d %H:%M:%SZ")
    return {
        "error": error,
        "error_description": f"AADSTS{number}: {text} Trace ID: {trace} Correlation ID: {correlation} "
                             f"Timestamp: {stamp}",
        "error_codes": [number], "timestamp": stamp, "trace_id": trace, "correlation_id": correlation,
        "error_uri": f"https://login.microsoftonline.com/error?code={number}",
    }
