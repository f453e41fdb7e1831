"""A loopback TCP proxy that can cut a connection in the middle of a server's answer.

    proxy = TcpProxy(dovecot.host, dovecot.port).start()
    proxy.arm(after_bytes=1500, pattern=b"BODYSTRUCTURE", nth=2)
    ...  # the 2nd client line holding BODYSTRUCTURE: 1500 bytes of its answer pass, then both sides close
    assert proxy.cut.is_set() and not proxy.cut_info["completed"]

It forwards bytes both ways untouched (one thread per direction and per
connection). Armed, it watches the lines the client sends; once the
``nth`` line holding ``pattern`` has been forwarded to the server, it lets
``after_bytes`` more bytes of server-to-client data through, then closes
both sockets, once, and disarms itself. ``cut_info`` says which command was
cut, how many of its bytes had passed, and whether its tagged completion had
already passed (``completed``: the cut was not mid-answer after all).

The production adapter connects to ``proxy.host``/``proxy.port`` as to any
IMAP server; nothing in the code under test knows a proxy is there.
"""

from __future__ import annotations

import contextlib
import socket
import threading

_BUFFER = 65536


class TcpProxy:
    host = "127.0.0.1"

    def __init__(self, target_host: str, target_port: int):
        self.target = (target_host, target_port)
        self.port = None
        self.cut = threading.Event()
        self.cut_info: dict = {}
        self.connections = 0
        self._lock = threading.Lock()
        self._armed = None  # {"pattern", "after", "nth", "seen"}
        self._listener = None
        self._sockets = set()
        self._stopped = False

    # -- life cycle -------------------------------------------------------------

    def start(self) -> TcpProxy:
        self._listener = socket.socket()
        self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._listener.bind((self.host, 0))
        self._listener.listen(16)
        self.port = self._listener.getsockname()[1]
        threading.Thread(target=self._accept_loop, name="tcp-proxy-accept", daemon=True).start()
        return self

    def stop(self) -> None:
        self._stopped = True
        with contextlib.suppress(OSError):
            self._listener.close()
        with self._lock:
            sockets, self._sockets = list(self._sockets), set()
        for sock in sockets:
            _close(sock)

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    # -- the fault --------------------------------------------------------------

    def arm(self, after_bytes: int, pattern: bytes = b"UID FETCH", nth: int = 1) -> None:
        """Cut the next connection that sends its ``nth`` line holding ``pattern``
        (counted across connections from now), ``after_bytes`` into the answer."""
        with self._lock:
            self.cut.clear()
            self.cut_info = {}
            self._armed = {"pattern": pattern, "after": after_bytes, "nth": nth, "seen": 0}

    def disarm(self) -> None:
        with self._lock:
            self._armed = None

    # -- internals --------------------------------------------------------------

    def _accept_loop(self):
        while not self._stopped:
            try:
                client, _address = self._listener.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(self.target, timeout=10)
                upstream.settimeout(None)
            except OSError:
                _close(client)
                continue
            link = _Link(self, client, upstream)
            with self._lock:
                self.connections += 1
                self._sockets.update((client, upstream))
            threading.Thread(target=link.client_to_server, name="tcp-proxy-c2s", daemon=True).start()
            threading.Thread(target=link.server_to_client, name="tcp-proxy-s2c", daemon=True).start()

    def _match(self, link, line: bytes) -> None:
        """Called for each complete client line before it is forwarded."""
        with self._lock:
            armed = self._armed
            if armed is None or armed["pattern"] not in line:
                return
            armed["seen"] += 1
            if armed["seen"] < armed["nth"]:
                return
            self._armed = None  # once
            link.trigger(line, armed["after"])

    def _record_cut(self, info: dict) -> None:
        with self._lock:
            self.cut_info = info
        self.cut.set()


class _Link:
    """One proxied connection: client <-> upstream."""

    def __init__(self, proxy: TcpProxy, client: socket.socket, upstream: socket.socket):
        self.proxy = proxy
        self.client = client
        self.upstream = upstream
        self._lock = threading.Lock()
        self._trigger = None  # {"line", "tag", "left", "passed"}
        self._closed = False

    def trigger(self, line: bytes, after_bytes: int) -> None:
        with self._lock:
            self._trigger = {"line": line.rstrip(b"\r\n"), "tag": line.split(b" ", 1)[0],
                             "left": after_bytes, "passed": b""}

    def client_to_server(self):
        pending = b""
        try:
            while True:
                data = self.client.recv(_BUFFER)
                if not data:
                    break
                pending += data
                # Only whole lines are matched; a command line is short, so the buffer stays small.
                *lines, pending = pending.split(b"\n")
                for line in lines:
                    self.proxy._match(self, line)
                if len(pending) > _BUFFER:
                    pending = pending[-_BUFFER:]
                self.upstream.sendall(data)
        except OSError:
            pass
        self.close()

    def server_to_client(self):
        try:
            while True:
                data = self.upstream.recv(_BUFFER)
                if not data:
                    break
                with self._lock:
                    trigger = self._trigger
                    if trigger is not None:
                        forward = data[:trigger["left"]]
                        trigger["left"] -= len(forward)
                        trigger["passed"] += forward
                    else:
                        forward = data
                if forward:
                    self.client.sendall(forward)
                if trigger is not None and trigger["left"] <= 0:
                    self._cut(trigger)
                    return
        except OSError:
            pass
        self.close()

    def _cut(self, trigger):
        passed, tag = trigger["passed"], trigger["tag"]
        completed = passed.startswith(tag + b" ") or (b"\r\n" + tag + b" ") in passed
        self.close()
        self.proxy._record_cut({"command": trigger["line"], "bytes": len(passed), "completed": completed,
                                "tail": passed[-200:]})

    def close(self):
        with self._lock:
            if self._closed:
                return
            self._closed = True
        _close(self.client)
        _close(self.upstream)


def _close(sock):
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)
    with contextlib.suppress(OSError):
        sock.close()
