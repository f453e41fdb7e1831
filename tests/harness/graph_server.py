"""A local fake of Microsoft Graph (mail) and Azure AD's v2 endpoints, over real HTTPS.

The Outlook adapter runs unchanged against it: msal with
``authority=server.authority, instance_discovery=False`` and a requests Session
whose ``verify`` is ``server.ca_file``; Graph calls go to ``server.url``.

- Azure AD: ``/{tenant}/v2.0/.well-known/openid-configuration`` (what msal reads at
  start-up), ``/{tenant}/oauth2/v2.0/token`` (refresh_token and authorization_code
  grants; every grant rotates the refresh token and kills the old one),
  ``/{tenant}/oauth2/v2.0/authorize`` (redirects with a code), and the instance
  discovery document in case a client asks for it.
- Graph: see graph_api.py for the routes. Every call needs a Bearer token the
  token endpoint issued (401 InvalidAuthenticationToken otherwise); more than
  ``world.max_concurrency`` calls in flight answer 429 ApplicationThrottled
  (MailboxConcurrency) with Retry-After: 1. A ``$batch`` of n steps holds
  min(n, 4) slots, as Graph runs up to 4 of its steps at once (its steps are
  then run one after another here); steps of the first wave that find no
  free slot answer 429 MailboxConcurrency on their own.

The state, faults and accounting live in graph_world.GraphWorld.
"""

import base64
import json
import os
import shutil
import socket
import ssl
import tempfile
import threading
import time
import urllib.parse
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import requests

from .graph_api import Request, batch, dispatch
from .graph_tls import write_certificates
from .graph_world import GraphError, GraphWorld

__all__ = ["GraphError", "GraphServer", "GraphWorld"]

_JSON = "application/json; odata.metadata=minimal; odata.streaming=true; IEEE754Compatible=false; charset=utf-8"
_KNOWN_TENANTS = ("common", "organizations", "consumers")


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "Microsoft-IIS/10.0"
    # An idle keep-alive connection is dropped after this long (the client opens a new one).
    timeout = 120

    def setup(self):
        super().setup()
        # Headers and body leave in two writes; without NODELAY, Nagle + delayed ACK add 40 ms a call.
        self.request.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.request.do_handshake()

    def log_message(self, *args):  # quiet: pytest output stays readable
        pass

    do_GET = do_POST = do_PATCH = do_DELETE = lambda self: self._handle()

    # ------------------------------------------------------------------ plumbing
    def _handle(self):
        fake = self.server.fake
        world = fake.world
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        path = urllib.parse.urlsplit(self.path).path
        if path == "/v1.0" or path.startswith("/v1.0/"):
            self._graph(world, fake, body)
        else:
            if world.latency:
                time.sleep(world.latency)
            self._azure_ad(world, fake, body)

    def _send(self, status, headers, payload):
        if isinstance(payload, bytes):
            data = payload
        elif payload is None:
            data = b""
        else:
            data = json.dumps(payload).encode()
            headers.setdefault("Content-Type", _JSON)
        self.send_response(status)
        headers.setdefault("request-id", str(uuid.uuid4()))
        for name, value in headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    # ---------------------------------------------------------------------- Graph
    def _graph(self, world, fake, body):
        headers = {name.lower(): value for name, value in self.headers.items()}
        relative = self.path[len("/v1.0"):] or "/"
        request = Request.parse(self.command, relative, fake.url, headers, body, self.headers.get_all("Prefer") or [])
        scheme, _, token = headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not token or not world.access_token_valid(token.strip()):
            world.count(world.requests, "unauthorized")
            message = ("Lifetime validation failed, the token is expired." if token else "Access token is empty.")
            error = GraphError(401, "InvalidAuthenticationToken", message)
            return self._send(401, {"WWW-Authenticate": 'Bearer realm="", authorization_uri='
                                    '"https://login.microsoftonline.com/common/oauth2/authorize", '
                                    'client_id="00000003-0000-0000-c000-000000000000"'}, error.body())
        is_batch = request.path.rstrip("/").lower() == "/$batch" and request.method == "POST"
        wanted = _batch_slots(request) if is_batch else 1
        slots = world.admit_upto(wanted) if is_batch else (1 if world.admit() else 0)
        if not slots:
            world.count(world.requests, "throttled")
            error = GraphError(429, "ApplicationThrottled", "Application is over its MailboxConcurrency limit.")
            return self._send(429, {"Retry-After": "1"}, error.body())
        try:
            # Inside the slot: a slow mailbox is what makes concurrent calls pile up.
            if world.latency:
                time.sleep(world.latency)
            if is_batch:
                world.count(world.immutable_id, "with" if request.prefer.get("idtype") == "ImmutableId" else "without")
                status, out, payload = batch(world, request, refused=wanted - slots)
            else:
                status, out, payload = dispatch(world, request)
        finally:
            world.release(slots)
        self._send(status, out, payload)

    # ------------------------------------------------------------------- Azure AD
    def _azure_ad(self, world, fake, body):
        split = urllib.parse.urlsplit(self.path)
        parts = [part for part in split.path.split("/") if part]
        query = dict(urllib.parse.parse_qsl(split.query))
        tenant, rest = (parts[0], "/".join(parts[1:])) if parts else ("", "")
        name = f"{self.command} /{{tenant}}/{rest}"
        world.count(world.requests, name)
        fault = world.take_fault(split.path)
        if fault:
            return self._send(fault.status, dict(fault.headers),
                              _aad_fault(fault.code, fault.status))
        if tenant == "common" and rest == "discovery/instance":
            target = urllib.parse.urlsplit(query.get("authorization_endpoint", "")).path.split("/")
            wanted = target[1] if len(target) > 1 and target[1] else fake.tenant
            return self._send(200, {}, {"tenant_discovery_endpoint":
                                        f"{fake.base}/{wanted}/v2.0/.well-known/openid-configuration",
                                        "api-version": "1.1", "metadata": []})
        if tenant != fake.tenant and tenant not in _KNOWN_TENANTS:
            return self._send(400, {}, {"error": "invalid_tenant", "error_codes": [90002],
                                        "error_description": f"AADSTS90002: Tenant '{tenant}' not found."})
        if self.command == "GET" and rest == "v2.0/.well-known/openid-configuration":
            return self._send(200, {}, fake.openid_configuration(tenant))
        if self.command == "GET" and rest == ".well-known/openid-configuration":
            return self._send(200, {}, fake.openid_configuration(tenant, version=""))
        if self.command == "POST" and rest in ("oauth2/v2.0/token", "oauth2/token"):
            form = dict(urllib.parse.parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True))
            basic = None
            scheme, _, encoded = (self.headers.get("Authorization") or "").partition(" ")
            if scheme.lower() == "basic":
                user, _, secret = base64.b64decode(encoded).decode().partition(":")
                basic = (urllib.parse.unquote_plus(user), urllib.parse.unquote_plus(secret))
            status, answer = world.grant(form, basic)
            return self._send(status, {"Cache-Control": "no-store, no-cache", "Pragma": "no-cache"}, answer)
        if self.command == "GET" and rest == "oauth2/v2.0/authorize":
            redirect = query.get("redirect_uri")
            if not redirect:
                return self._send(400, {}, {"error": "invalid_request", "error_description": "AADSTS900144: "
                                            "The request body must contain the following parameter: 'redirect_uri'."})
            answer = {"code": world.new_authorization_code(), "session_state": str(uuid.uuid4())}
            if "state" in query:
                answer["state"] = query["state"]
            joiner = "&" if "?" in redirect else "?"
            return self._send(302, {"Location": redirect + joiner + urllib.parse.urlencode(answer)}, None)
        return self._send(404, {}, {"error": "not_found", "error_description": f"No such endpoint: {split.path}"})


def _batch_slots(request):
    """Graph runs up to 4 steps of a $batch (without dependsOn) against the mailbox at once."""
    try:
        steps = request.json().get("requests")
    except GraphError:
        return 1
    return max(1, min(len(steps) if isinstance(steps, list) else 1, 4))


def _aad_fault(code, status):
    error = code if code and not code[0].isupper() else {400: "invalid_request", 429: "temporarily_unavailable"}.get(
        status, "server_error")
    return {"error": error, "error_description": f"AADSTS50000: Injected fault ({error}).", "error_codes": [50000]}


class _TlsServer(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False
    allow_reuse_address = True

    def __init__(self, fake, context):
        self.fake, self.context = fake, context
        super().__init__(("127.0.0.1", 0), _Handler)

    def get_request(self):
        # The handshake runs in the handler's thread (setup), so a slow client never blocks accept().
        sock, address = super().get_request()
        return self.context.wrap_socket(sock, server_side=True, do_handshake_on_connect=False), address

    def handle_error(self, request, client_address):
        pass  # a client that hangs up or fails the TLS handshake is not a server bug


class GraphServer:
    """Context manager: ``with GraphServer() as server: server.url, server.authority, server.ca_file``."""

    def __init__(self, world=None, *, tenant="tenant-id"):
        self.world = world or GraphWorld()
        self.tenant = tenant
        self._directory = None
        self._server = None
        self._thread = None
        self.base = self.url = self.authority = self.ca_file = None

    def start(self):
        self._directory = tempfile.mkdtemp(prefix="maildesk-graph-")
        self.ca_file, cert, key = write_certificates(self._directory)
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(cert, key)
        self._server = _TlsServer(self, context)
        port = self._server.server_address[1]
        self.base = f"https://127.0.0.1:{port}"
        self.url = self.base + "/v1.0"
        self.authority = f"{self.base}/{self.tenant}"
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.1},
                                        name="fake-graph", daemon=True)
        self._thread.start()
        return self

    def stop(self):
        if self._server:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._directory and os.path.isdir(self._directory):
            shutil.rmtree(self._directory, ignore_errors=True)

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    def session(self):
        """A requests Session that trusts this server's CA.

        ``trust_env`` is off because REQUESTS_CA_BUNDLE / CURL_CA_BUNDLE in the
        environment override ``Session.verify`` (psf/requests#3829, #4726).
        """
        session = requests.Session()
        session.trust_env = False
        session.verify = self.ca_file
        return session

    def openid_configuration(self, tenant, version="/v2.0"):
        """Azure AD's discovery document, pointing every endpoint at this server."""
        root = f"{self.base}/{tenant}"
        issuer_tenant = "{tenantid}" if tenant in _KNOWN_TENANTS else tenant
        return {
            "token_endpoint": f"{root}/oauth2{version}/token",
            "token_endpoint_auth_methods_supported": ["client_secret_post", "private_key_jwt", "client_secret_basic"],
            "jwks_uri": f"{root}/discovery{version}/keys",
            "response_modes_supported": ["query", "fragment", "form_post"],
            "subject_types_supported": ["pairwise"],
            "id_token_signing_alg_values_supported": ["RS256"],
            "response_types_supported": ["code", "id_token", "code id_token", "id_token token"],
            "scopes_supported": ["openid", "profile", "email", "offline_access"],
            "issuer": f"{self.base}/{issuer_tenant}{version}",
            "request_uri_parameter_supported": False,
            "userinfo_endpoint": f"{self.base}/oidc/userinfo",
            "authorization_endpoint": f"{root}/oauth2{version}/authorize",
            "device_authorization_endpoint": f"{root}/oauth2{version}/devicecode",
            "http_logout_supported": True,
            "frontchannel_logout_supported": True,
            "end_session_endpoint": f"{root}/oauth2{version}/logout",
            "claims_supported": ["sub", "iss", "aud", "exp", "iat", "auth_time", "acr", "nonce",
                                 "preferred_username", "name", "tid", "ver", "at_hash", "c_hash", "email"],
            "tenant_region_scope": "EU",
            "cloud_instance_name": "microsoftonline.com",
            "cloud_graph_host_name": "graph.windows.net",
            "msgraph_host": urllib.parse.urlsplit(self.base).netloc,
            "rbac_url": "https://pas.windows.net",
        }
