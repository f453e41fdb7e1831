"""The Graph v1.0 mail routes of the fake server: URL in, (status, headers, payload) out.

Both a plain HTTP request and each step of a ``$batch`` go through ``dispatch``,
so fail_next / slow_next and the per-route counters see them the same way.
Paths here are relative to the version root (``/me/messages/{id}``).
Continuation tokens are base64 JSON: opaque to clients, which must follow
@odata.nextLink / @odata.deltaLink as given.
"""

import base64
import binascii
import json
import re
import time
import urllib.parse
from dataclasses import dataclass, field

from .graph_mail import PROPERTY_NAMES, as_datetime
from .graph_world import GraphError

MAX_BATCH = 20
DEFAULT_PAGE = 10
MAX_PAGE = 1000
_SIZE_EXPAND = "singlevalueextendedproperties($filter=ideq'integer0x0e08')"


@dataclass
class Request:
    method: str
    path: str                      # decoded, relative to /v1.0, no query
    query: dict                    # decoded keys ("$select") -> value
    base: str                      # "https://127.0.0.1:PORT/v1.0"
    headers: dict = field(default_factory=dict)   # lower-case names
    body: bytes = b""
    prefer: dict = field(default_factory=dict)    # lower-case preference -> value

    @classmethod
    def parse(cls, method, target, base, headers, body, prefer_values):
        split = urllib.parse.urlsplit(target)
        query = dict(urllib.parse.parse_qsl(split.query, keep_blank_values=True))
        prefer = {}
        for value in prefer_values:
            for piece in value.split(","):
                key, _, setting = piece.strip().partition("=")
                if key:
                    prefer[key.strip().lower()] = setting.strip().strip('"')
        path = "/" + urllib.parse.unquote(split.path).lstrip("/")
        return cls(method.upper(), path, query, base, headers, body, prefer)

    @property
    def target(self):
        """What fail_next / slow_next patterns are searched in: the path and the decoded query."""
        if not self.query:
            return self.path
        return self.path + "?" + "&".join(f"{key}={value}" for key, value in self.query.items())

    def json(self):
        try:
            return json.loads(self.body or b"{}")
        except ValueError:
            raise GraphError(400, "BadRequest", "Unable to read JSON request payload.") from None

    def page_size(self):
        """(size from Prefer: odata.maxpagesize or None)."""
        value = self.prefer.get("odata.maxpagesize")
        if value is None:
            return None
        try:
            return max(1, min(int(value), MAX_PAGE))
        except ValueError:
            return None


def _token(state):
    return base64.urlsafe_b64encode(json.dumps(state, separators=(",", ":")).encode()).decode().rstrip("=")


def _untoken(text, code="BadRequest"):
    try:
        return json.loads(base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)))
    except (binascii.Error, ValueError):
        raise GraphError(400, code, "The continuation token is not valid.") from None


def _allow(request, *names):
    for key in request.query:
        if key.startswith("$") and key.lower() not in names:
            raise GraphError(400, "BadRequest", f"Query option '{key}' is not supported here by the fake Graph server.")


def _select(request):
    text = request.query.get("$select")
    if not text:
        return None
    chosen = []
    for name in (item.strip() for item in text.split(",")):
        if not name:
            continue
        canonical = PROPERTY_NAMES.get(name.lower())
        if canonical is None:
            raise GraphError(400, "RequestBroker--ParseUri",
                             f"Could not find a property named '{name}' on type 'microsoft.graph.message'.")
        if canonical not in chosen:
            chosen.append(canonical)
    return chosen


def _with_size(request):
    text = request.query.get("$expand")
    if not text:
        return False
    if re.sub(r"\s+", "", text).lower() != _SIZE_EXPAND:
        raise GraphError(400, "BadRequest", "The fake Graph server only expands "
                         "singleValueExtendedProperties($filter=id eq 'Integer 0x0E08') (the message size).")
    return True


def _int(request, name, default, low, high):
    value = request.query.get(name)
    if value is None:
        return default
    try:
        number = int(value)
    except ValueError:
        raise GraphError(400, "BadRequest", f"Invalid value '{value}' for {name}.") from None
    if not low <= number <= high:
        raise GraphError(400, "ErrorInvalidArgument", f"{name} must be between {low} and {high}.")
    return number


def _quote(segment):
    return urllib.parse.quote(segment, safe="=")


# ---------------------------------------------------------------------- routes
def me(world, request):
    return 200, {}, {"@odata.context": request.base + "/$metadata#users/$entity", "id": world.user_id,
                     "displayName": "Test User", "mail": world.user_email, "userPrincipalName": world.user_email}


def _folder_page(world, request, parent):
    _allow(request, "$top", "$skip", "$select")
    top = _int(request, "$top", DEFAULT_PAGE, 1, MAX_PAGE)
    skip = _int(request, "$skip", 0, 0, 10**9)
    hidden = request.query.get("includeHiddenFolders", "").lower() == "true"
    values, more = world.list_folders(parent, hidden=hidden, skip=skip, top=top)
    if request.query.get("$select"):
        keep = {"id", *(name.strip() for name in request.query["$select"].split(","))}
        values = [{key: value for key, value in item.items() if key in keep} for item in values]
    body = {"value": values}
    if more:
        query = {**request.query, "$top": str(top), "$skip": str(skip + top)}
        body["@odata.nextLink"] = request.base + request.path + "?" + urllib.parse.urlencode(query)
    return 200, {}, body


def list_folders(world, request):
    return _folder_page(world, request, None)


def child_folders(world, request, folder):
    return _folder_page(world, request, folder)


def get_folder(world, request, folder):
    _allow(request, "$select")
    found = world.get_folder(folder)
    if request.query.get("$select"):
        keep = {"id", *(name.strip() for name in request.query["$select"].split(","))}
        found = {key: value for key, value in found.items() if key in keep}
    return 200, {}, found


def _received_filter(request):
    """The one $filter the messages listing knows: ``receivedDateTime le <DateTimeOffset>`` (a keyset walk)."""
    text = request.query.get("$filter")
    if text is None:
        return None
    match = re.fullmatch(r"\s*receivedDateTime\s+le\s+(\S+)\s*", text)
    if not match:
        raise GraphError(400, "BadRequest", "The fake Graph server filters a folder's messages only with "
                         "$filter=receivedDateTime le <DateTimeOffset>.")
    try:
        return as_datetime(match.group(1)).timestamp()
    except ValueError:
        raise GraphError(400, "BadRequest", f"Invalid DateTimeOffset '{match.group(1)}'.") from None


def list_messages(world, request, folder):
    """As Graph pages it: ``@odata.nextLink`` is the same query with ``$skip`` = the offset of the next page.

    An offset is only as good as the listing it was taken in: mail deleted
    or moved above it meanwhile shifts unseen messages above the offset.
    """
    _allow(request, "$select", "$orderby", "$top", "$skip", "$expand", "$filter")
    headers = {}
    order = re.sub(r"\s+", " ", request.query.get("$orderby", "receivedDateTime desc").strip()).lower()
    if order not in ("receiveddatetime desc", "receiveddatetime asc", "receiveddatetime"):
        raise GraphError(400, "BadRequest", "The fake Graph server orders messages by receivedDateTime only.")
    descending, select, before = order.endswith("desc"), _select(request), _received_filter(request)
    top, with_size = _int(request, "$top", None, 1, MAX_PAGE), _with_size(request)
    skip = _int(request, "$skip", 0, 0, 10**9)
    limit = top or request.page_size() or DEFAULT_PAGE
    if not top and request.page_size():
        headers["Preference-Applied"] = f"odata.maxpagesize={limit}"
    values, more = world.message_page(folder, before=before, descending=descending, skip=skip, limit=limit,
                                      select=select, with_size=with_size)
    body = {"value": values}
    if more:
        query = {**request.query, "$skip": str(skip + limit)}
        body["@odata.nextLink"] = (f"{request.base}/me/mailFolders/{_quote(folder)}/messages?"
                                   + urllib.parse.urlencode(query, quote_via=urllib.parse.quote, safe="$,()='"))
    return 200, headers, body


def delta(world, request, folder):
    _allow(request, "$select", "$deltatoken", "$skiptoken")
    if request.query.get("$deltatoken") == "latest":
        state = "latest"
    elif "$deltatoken" in request.query or "$skiptoken" in request.query:
        state = _untoken(request.query.get("$deltatoken") or request.query["$skiptoken"], "syncStateInvalid")
    else:
        state = None
    limit = request.page_size() or DEFAULT_PAGE
    headers = {"Preference-Applied": f"odata.maxpagesize={limit}"} if request.page_size() else {}
    items, next_state, delta_state = world.delta(folder, state, _select(request), limit)
    link = f"{request.base}/me/mailFolders/{_quote(folder)}/messages/delta"
    body = {"value": items}
    if next_state:
        body["@odata.nextLink"] = f"{link}?$skiptoken={_token(next_state)}"
    else:
        body["@odata.deltaLink"] = f"{link}?$deltatoken={_token(delta_state)}"
    return 200, headers, body


def get_message(world, request, message, folder=None):
    _allow(request, "$select", "$expand")
    if folder is not None and world.folder_of(message) != world.get_folder(folder)["id"]:
        raise GraphError(404, "ErrorItemNotFound", "The specified object was not found in the store.")
    return 200, {}, world.message_json(message, _select(request), with_size=_with_size(request))


def message_value(world, request, message):
    _allow(request)
    return 200, {"Content-Type": "text/plain"}, world.message_mime(message)


def attachments(world, request, message):
    _allow(request, "$select")
    return 200, {}, {"value": world.attachments_json(message)}


def patch_message(world, request, message):
    change = request.json()
    flag = (change.get("flag") or {}).get("flagStatus")
    world.update(message, is_read=change.get("isRead"), flagged=flag)
    return 200, {}, world.message_json(message)


def delete_message(world, request, message):
    world.delete(message)
    return 204, {}, None


def move_message(world, request, message):
    destination = request.json().get("destinationId")
    if not destination:
        raise GraphError(400, "ErrorInvalidIdMalformed", "destinationId is required.")
    world.move(message, destination)
    return 201, {}, world.message_json(message)


def send_mail(world, request):
    if request.headers.get("content-type", "").startswith("text/plain"):
        try:
            mime = base64.b64decode(request.body, validate=False)
        except binascii.Error:
            raise GraphError(400, "ErrorMimeContentInvalidBase64String",
                             "Invalid base64 string for MIME content.") from None
        world.file_sent({}, mime, True)
        return 202, {}, None
    payload = request.json()
    message = payload.get("message")
    if not isinstance(message, dict):
        raise GraphError(400, "ErrorInvalidParameter", "The 'message' parameter is required.")

    def addresses(key):
        return tuple(item["emailAddress"]["address"] for item in message.get(key) or [])

    to = addresses("toRecipients")
    if not to and not addresses("ccRecipients") and not addresses("bccRecipients"):
        raise GraphError(400, "ErrorInvalidRecipients", "At least one recipient is not valid.")
    body = message.get("body") or {}
    files = [(item["name"], item.get("contentType") or "application/octet-stream",
              base64.b64decode(item.get("contentBytes", ""))) for item in message.get("attachments") or []]
    fields = {"subject": message.get("subject", ""), "to": to, "cc": addresses("ccRecipients"),
              "body": body.get("content", ""), "attachments": files,
              "body_type": "html" if (body.get("contentType") or "").lower() == "html" else "text"}
    world.file_sent(fields, None, payload.get("saveToSentItems", True) is not False)
    return 202, {}, None


def search_messages(world, request):
    """GET /me/messages: only ``$filter=internetMessageId eq '<id>'`` (what the sender's proof asks)."""
    _allow(request, "$select", "$filter", "$top")
    match = re.fullmatch(r"\s*internetMessageId\s+eq\s+'((?:[^']|'')*)'\s*", request.query.get("$filter", ""))
    if not match:
        raise GraphError(400, "BadRequest", "The fake Graph server lists /me/messages only with "
                         "$filter=internetMessageId eq '<id>'.")
    select = _select(request)
    found = world.find_internet_id(match.group(1).replace("''", "'"))
    return 200, {}, {"value": [world.message_json(msg_id, select) for msg_id in found]}


def create_message(world, request):
    """POST /me/messages: only the MIME form (base64 body, Content-Type text/plain)."""
    if not request.headers.get("content-type", "").startswith("text/plain"):
        raise GraphError(400, "BadRequest", "The fake Graph server creates messages from MIME only.")
    try:
        mime = base64.b64decode(request.body, validate=True)
    except binascii.Error:
        raise GraphError(400, "ErrorMimeContentInvalidBase64String",
                         "Invalid base64 string for MIME content.") from None
    if not mime.strip():
        raise GraphError(400, "ErrorMimeContentInvalid", "The MIME content is empty.")
    return 201, {}, world.message_json(world.create_draft(mime))


def send_draft(world, request, message):
    world.send_draft(message)
    return 202, {}, None


_ID = r"(?P<{}>[^/]+)"
ROUTES = [
    ("GET", "/me", me),
    ("GET", "/me/mailFolders", list_folders),
    ("GET", "/me/mailFolders/{folder}", get_folder),
    ("GET", "/me/mailFolders/{folder}/childFolders", child_folders),
    ("GET", "/me/mailFolders/{folder}/messages", list_messages),
    ("GET", "/me/mailFolders/{folder}/messages/delta", delta),
    ("GET", "/me/mailFolders/{folder}/messages/{message}", get_message),
    ("GET", "/me/messages/{message}", get_message),
    ("PATCH", "/me/messages/{message}", patch_message),
    ("DELETE", "/me/messages/{message}", delete_message),
    ("GET", "/me/messages/{message}/$value", message_value),
    ("GET", "/me/messages/{message}/attachments", attachments),
    ("POST", "/me/messages/{message}/move", move_message),
    ("POST", "/me/sendMail", send_mail),
    ("GET", "/me/messages", search_messages),
    ("POST", "/me/messages", create_message),
    ("POST", "/me/messages/{message}/send", send_draft),
]
_COMPILED = [
    (method, pattern.replace("{folder}", "{id}").replace("{message}", "{id}"),
     re.compile(re.escape(pattern).replace(r"\{folder\}", _ID.format("folder"))
                .replace(r"\{message\}", _ID.format("message")).replace("delta", r"delta(?:\(\))?"),
                re.IGNORECASE),
     handler)
    for method, pattern, handler in ROUTES
]


def _route(world, request):
    path = request.path
    user = re.match(r"/users/([^/]+)(/.*)?$", path, re.IGNORECASE)
    if user:
        if user.group(1).lower() not in (world.user_email.lower(), world.user_id):
            raise GraphError(404, "ErrorInvalidUser", f"The requested user '{user.group(1)}' is invalid.")
        path = "/me" + (user.group(2) or "")
    for method, name, pattern, handler in _COMPILED:
        match = pattern.fullmatch(path)
        if match and method == request.method:
            return f"{method} {name}", handler, match.groupdict()
    raise GraphError(400, "BadRequest", f"Resource not found for the segment '{path}' ({request.method}).")


def dispatch(world, request, *, step=False):
    """(status, headers, payload) for one request or batch step; payload is a dict, bytes or None."""
    prefix = "step_" if step else ""
    world.count(world.immutable_id, prefix + ("with" if request.prefer.get("idtype") == "ImmutableId" else "without"))
    try:
        name, handler, params = _route(world, request)
        world.count(world.requests, name)
        pause = world.take_slow(request.target)
        if pause:
            time.sleep(pause)
        fault = world.take_fault(request.target)
        if fault:
            raise fault
        status, headers, payload = handler(world, request, **params)
    except GraphError as error:
        return error.status, dict(error.headers), error.body()
    if request.prefer.get("idtype") == "ImmutableId":
        applied = [headers["Preference-Applied"]] if "Preference-Applied" in headers else []
        headers["Preference-Applied"] = ", ".join([*applied, 'IdType="ImmutableId"'])
    return status, headers, payload


def batch(world, request, refused=0):
    """JSON batching: the steps dispatched in order inside the batch's mailbox slots.

    ``refused``: how many of the first wave (the 4 steps Graph runs at once) found no free slot; they
    answer 429 MailboxConcurrency on their own, the others run.
    """
    world.count(world.requests, "POST /$batch")
    fault = world.take_fault("/$batch")
    if fault:
        return fault.status, dict(fault.headers), fault.body()
    try:
        steps = request.json().get("requests")
        if not isinstance(steps, list) or not steps:
            raise GraphError(400, "BadRequest", "Invalid batch payload format.")
        if len(steps) > MAX_BATCH:
            raise GraphError(400, "BadRequest", f"The number of batch requests exceeds the limit of {MAX_BATCH}.")
        ids = [str(step.get("id")) for step in steps]
        if len(set(ids)) != len(ids) or any(not step.get("method") or not step.get("url") for step in steps):
            raise GraphError(400, "BadRequest", "Batch requests need unique ids, a method and a url.")
    except GraphError as error:
        return error.status, {}, error.body()
    responses = []
    wave = min(len(steps), 4)
    for number, step in enumerate(steps):
        if wave - refused <= number < wave:
            error = GraphError(429, "ApplicationThrottled", "Application is over its MailboxConcurrency limit.",
                               {"Retry-After": "1"})
            responses.append({"id": str(step["id"]), "status": 429, "headers": dict(error.headers),
                              "body": error.body()})
            continue
        headers = {key.lower(): str(value) for key, value in (step.get("headers") or {}).items()}
        body = step.get("body")
        raw = json.dumps(body).encode() if isinstance(body, dict | list) else (body or "").encode()
        url = step["url"]
        if url.startswith(("http:", "https:")) or url.lstrip("/").startswith("$batch"):
            status, out, payload = 400, {}, GraphError(400, "BadRequest", "Invalid batch step url.").body()
        else:
            inner = Request.parse(step["method"], url, request.base, headers, raw, [headers.get("prefer", "")])
            status, out, payload = dispatch(world, inner, step=True)
        answer = {"id": str(step["id"]), "status": status, "headers": out}
        if isinstance(payload, bytes):
            answer["body"] = base64.b64encode(payload).decode("ascii")
        elif payload is not None:
            out.setdefault("Content-Type", "application/json")
            answer["body"] = payload
        responses.append(answer)
    return 200, {}, {"responses": responses}
