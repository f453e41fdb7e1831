"""A local fake of the Gmail v1 REST API, over real HTTP on 127.0.0.1, for the Gmail adapter's tests.

``GmailServer`` serves a ``GmailWorld`` (gmail_world.py) with the JSON shapes
of the discovery document google-api-python-client ships
(googleapiclient/discovery_cache/documents/gmail.v1.json), so the production
adapter runs unchanged against it with
``client_options={"api_endpoint": server.url}``:

- ``GET /gmail/v1/users/{me|email}/profile``, ``/labels``, ``/labels/{id}``,
  ``/messages``, ``/messages/{id}``, ``/history``;
- ``POST /gmail/v1/users/{u}/messages/send`` (``{"raw": base64url}``) and its
  ``/upload/...`` twin (``uploadType=media`` or ``multipart``);
- ``POST /batch/gmail/v1`` and ``/batch``: what ``BatchHttpRequest`` sends,
  a multipart/mixed body of application/http parts (at most 100, as Google);
  the answer is multipart/mixed with ``Content-ID: <response-ID>`` per part
  and each part goes through auth, faults and quota like a direct call;
- ``POST /token``: the OAuth token endpoint (refresh_token / authorization_code).

Every API call needs ``Authorization: Bearer`` with a token the world issued
(``/token`` or ``world.issue_access_token()``); inside a batch a part's own
header wins over the outer request's.

Order of checks for one call: auth (401), queued fault (``fail_next``, and
``fail_batch_item`` inside a batch), quota (429 or 403), ``slow_next``, then
the answer. ``latency`` is added once per HTTP request.
"""

from __future__ import annotations

import email.parser
import email.policy
import json
import re
import secrets
import threading
import time
import urllib.parse
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from . import gmail_mime
from .gmail_world import ApiError, GmailWorld, TokenError

__all__ = ["ApiError", "GmailServer", "GmailWorld"]

MAX_BATCH_PARTS = 100
_USER = r"/gmail/v1/users/(?P<user>[^/]+)"
_ROUTES = [  # (http method, path pattern, discovery method id)
    ("GET", re.compile(_USER + r"/profile$"), "gmail.users.getProfile"),
    ("GET", re.compile(_USER + r"/labels$"), "gmail.users.labels.list"),
    ("GET", re.compile(_USER + r"/labels/(?P<id>[^/]+)$"), "gmail.users.labels.get"),
    ("GET", re.compile(_USER + r"/messages$"), "gmail.users.messages.list"),
    ("POST", re.compile(_USER + r"/messages/send$"), "gmail.users.messages.send"),
    ("POST", re.compile(r"/upload" + _USER + r"/messages/send$"), "gmail.users.messages.send"),
    ("GET", re.compile(_USER + r"/messages/(?P<id>[^/]+)$"), "gmail.users.messages.get"),
    ("GET", re.compile(_USER + r"/history$"), "gmail.users.history.list"),
]
_BATCH_PATHS = ("/batch/gmail/v1", "/batch")


def _json(value) -> bytes:
    return json.dumps(value, separators=(",", ":")).encode()


def _true(value) -> bool:
    return str(value).lower() in ("true", "1")


def _route(method, path):
    for http_method, pattern, method_id in _ROUTES:
        match = pattern.match(path)
        if match:
            if http_method != method:
                raise ApiError(405, f"Method {method} not allowed for {path}", reason="badRequest")
            return method_id, {key: urllib.parse.unquote(value) for key, value in match.groupdict().items()}
    raise ApiError(404, f"The requested URL {path} was not found on this server.")


def _sent_message(query, headers, body) -> tuple[bytes, str | None]:
    """The raw message and thread id of a messages.send, JSON or upload."""
    upload = (query.get("uploadType") or [""])[0]
    content_type = headers.get("content-type", "")
    if upload == "media":
        return body, None
    if upload == "multipart":
        parsed = email.parser.BytesParser(policy=email.policy.compat32).parsebytes(
            b"Content-Type: " + content_type.encode() + b"\r\n\r\n" + body)
        metadata, message = parsed.get_payload()
        meta = json.loads(metadata.get_payload() or "{}")
        return message.get_payload(decode=True) or message.get_payload().encode(), meta.get("threadId")
    try:
        data = json.loads(body or b"{}")
        return gmail_mime.from_b64url(data["raw"]), data.get("threadId")
    except (ValueError, KeyError, TypeError, AttributeError):
        raise ApiError(400, "'raw' RFC822 payload message string or uploading message via /upload/* URL "
                            "required", reason="invalidArgument") from None


def _answer(world: GmailWorld, method_id, args, query, headers, body):
    first = {key: values[0] for key, values in query.items()}
    user = args.get("user", "")
    if user != "me" and user.lower() != world.user_email.lower():
        raise ApiError(403, f"Delegation denied for {world.user_email}", reason="forbidden")
    if method_id == "gmail.users.getProfile":
        return world.get_profile()
    if method_id == "gmail.users.labels.list":
        return world.list_labels()
    if method_id == "gmail.users.labels.get":
        return world.get_label(args["id"])
    if method_id == "gmail.users.messages.list":
        q = first.get("q", "").strip()
        msgid = re.fullmatch(r"rfc822msgid:(\S+)", q)
        if q and not msgid:  # the one operator the sender's proof uses
            raise ApiError(400, "The fake Gmail server only searches rfc822msgid:<id>", reason="invalidArgument")
        return world.list_messages(
            query.get("labelIds", []), rfc822msgid=msgid.group(1) if msgid else None,
            include_spam_trash=_true(first.get("includeSpamTrash")),
            max_results=first.get("maxResults") or 100,
            page_token=first.get("pageToken"),
        )
    if method_id == "gmail.users.messages.get":
        return world.get_message(args["id"], first.get("format", "full"), query.get("metadataHeaders"))
    if method_id == "gmail.users.history.list":
        return world.list_history(
            first.get("startHistoryId"),
            history_types=query.get("historyTypes", []),
            label_id=first.get("labelId"),
            max_results=first.get("maxResults") or 100,
            page_token=first.get("pageToken"),
        )
    if method_id == "gmail.users.messages.send":
        raw, thread_id = _sent_message(query, headers, body)
        return world.send(raw, thread_id)
    raise ApiError(501, f"{method_id} is not served by the fake")


def call_api(world: GmailWorld, method, target, headers, body, *, batch_item=False):
    """One API call, direct or inside a batch: (status, headers, JSON body)."""
    split = urllib.parse.urlsplit(target)
    query = urllib.parse.parse_qs(split.query, keep_blank_values=True)
    try:
        method_id, args = _route(method, split.path)
    except ApiError as error:
        return error.status, error.headers, error.body()
    world.count(method_id)
    try:
        world.authenticate(headers.get("authorization"))
        if batch_item and "id" in args:
            world.take_item_fault(args["id"])
        world.take_fault(method_id)
        world.charge(method_id)
        delay = world.take_delay(method_id)
        if delay:
            time.sleep(delay)
        return 200, {}, _answer(world, method_id, args, query, headers, body)
    except ApiError as error:
        return error.status, error.headers, error.body()


def _parse_part(text: str):
    """An application/http part: request line, headers, body (LF or CRLF line ends)."""
    head, separator, body = re.split(r"(\r?\n\r?\n)", text, maxsplit=1) if re.search(r"\r?\n\r?\n", text) \
        else (text, "", "")
    lines = head.splitlines()
    method, target = lines[0].split()[:2]
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return method, target, headers, body.encode("utf-8", "surrogateescape")


def _status_line(status) -> str:
    try:
        phrase = HTTPStatus(status).phrase
    except ValueError:
        phrase = "Error"
    return f"HTTP/1.1 {status} {phrase}"


def call_batch(world: GmailWorld, headers, body) -> tuple[int, dict, bytes]:
    content_type = headers.get("content-type", "")
    if not content_type.lower().startswith("multipart/mixed"):
        error = ApiError(400, "Batch request must be multipart/mixed", reason="badRequest")
        return error.status, {}, _json(error.body())
    parsed = email.parser.Parser(policy=email.policy.compat32).parsestr(
        f"Content-Type: {content_type}\r\n\r\n" + body.decode("utf-8", "surrogateescape"))
    parts = parsed.get_payload() if parsed.is_multipart() else []
    if not parts or len(parts) > MAX_BATCH_PARTS:
        error = ApiError(400, f"A batch request must hold 1 to {MAX_BATCH_PARTS} requests, not {len(parts)}",
                         reason="badRequest")
        return error.status, {}, _json(error.body())
    boundary = "batch_" + secrets.token_hex(12)
    chunks = []
    for part in parts:
        method, target, inner_headers, inner_body = _parse_part(part.get_payload())
        inner_headers = {**{k: v for k, v in headers.items() if k == "authorization"}, **inner_headers}
        status, answer_headers, answer = call_api(world, method, target, inner_headers, inner_body,
                                                  batch_item=True)
        content_id = (part.get("Content-ID") or "").strip()
        lines = [f"--{boundary}", "Content-Type: application/http"]
        if content_id:
            lines.append(f"Content-ID: <response-{content_id.strip('<>')}>")
        lines += ["", _status_line(status), "Content-Type: application/json; charset=UTF-8"]
        lines += [f"{name}: {value}" for name, value in answer_headers.items()]
        lines += ["", json.dumps(answer, separators=(",", ":"))]
        chunks.append("\r\n".join(lines))
    text = "\r\n".join(chunks) + f"\r\n--{boundary}--\r\n"
    return 200, {"Content-Type": f"multipart/mixed; boundary={boundary}"}, text.encode()


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "FakeGmail/1"

    def log_message(self, format, *args):
        pass  # request lines may carry tokens; keep them out of test output

    def do_GET(self):
        self._serve("GET")

    def do_POST(self):
        self._serve("POST")

    def do_PUT(self):
        self._serve("PUT")

    def do_DELETE(self):
        self._serve("DELETE")

    def _serve(self, method):
        world: GmailWorld = self.server.world
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        headers = {name.lower(): value for name, value in self.headers.items()}
        world.count("http_requests")
        if world.latency:
            time.sleep(world.latency)
        path = urllib.parse.urlsplit(self.path).path
        try:
            if method == "POST" and path == "/token":
                status, extra, payload = self._token(world, body)
            elif method == "POST" and path in _BATCH_PATHS:
                status, extra, payload = self._batch(world, headers, body)
            else:
                status, extra, payload = call_api(world, method, self.path, headers, body)
                payload = _json(payload)
        except Exception as error:  # a bug in the fake must reach the test as a 500, not a hung client
            status, extra = 500, {}
            payload = _json(ApiError(500, f"fake Gmail server bug: {error!r}").body())
        self.send_response(status)
        extra.setdefault("Content-Type", "application/json; charset=UTF-8")
        for name, value in extra.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    @staticmethod
    def _token(world, body):
        form = {key: values[0] for key, values in urllib.parse.parse_qs(body.decode()).items()}
        try:
            return 200, {"Cache-Control": "no-store"}, _json(world.grant(form))
        except TokenError as error:
            return error.status, {}, _json(error.body())

    @staticmethod
    def _batch(world, headers, body):
        world.count("batch")
        try:
            world.take_fault("batch")
        except ApiError as error:
            return error.status, error.headers, _json(error.body())
        delay = world.take_delay("batch")
        if delay:
            time.sleep(delay)
        return call_batch(world, headers, body)


class _HttpServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True


class GmailServer:
    """Context manager: ``with GmailServer() as server: ... server.url, server.world``."""

    def __init__(self, world: GmailWorld | None = None, *, user_email: str = "user@example.com"):
        self.world = world or GmailWorld(user_email)
        self._httpd = None
        self._thread = None
        self.url = ""
        self.token_url = ""

    def start(self) -> GmailServer:
        self._httpd = _HttpServer(("127.0.0.1", 0), _Handler)
        self._httpd.world = self.world
        port = self._httpd.server_address[1]
        self.url = f"http://127.0.0.1:{port}"
        self.token_url = self.url + "/token"
        self._thread = threading.Thread(target=self._httpd.serve_forever, args=(0.05,), name="fake-gmail", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._thread.join(timeout=5)
            self._httpd = None

    def __enter__(self) -> GmailServer:
        return self.start()

    def __exit__(self, *exc_info) -> None:
        self.stop()
