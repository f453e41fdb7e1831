"""A real SMTP server on loopback (aiosmtpd) that keeps and counts what it accepts.

    with SmtpSink(users={"alice": "secret"}, local={"alice@example.com": dovecot_account}) as sink:
        ...  # send to sink.host:sink.port
        sink.count("<id@example.com>")  # how many times that Message-ID was accepted

- Every message accepted (250 after DATA) is kept with its envelope and
  counted by Message-ID: "sent twice" is a count of 2 here.
- Refusals on demand, each consumed when it fires: ``refuse("rcpt", 450)``,
  ``refuse("rcpt", 550, address="x@y")``, ``refuse("data", 554)``,
  ``refuse("mail", 421)``; ``drop_after_data()`` accepts the message and
  closes the connection without answering (the "answer lost" case).
- ``users``: AUTH PLAIN/LOGIN required, checked against this dict (change
  it to play "password changed": the next login gets 535).
- ``local``: addresses delivered into a Dovecot mailbox by IMAP APPEND
  *before* the 250 is sent, like a real MTA with local delivery (the
  account's own copy the sender's proof looks for).
- ``latency``: seconds slept before answering DATA (a slow server, to kill
  a sender while it waits).

Runs in a thread of its own; also ``python -m tests.harness.smtp_sink``
for the demo (prints its port, keeps messages as .eml in a directory).
"""

from __future__ import annotations

import collections
import contextlib
import dataclasses
import email.parser
import email.policy
import logging
import os
import socket
import sys
import threading
import time
import warnings

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword

# aiosmtpd logs every connection, and warns that AUTH without TLS is unsafe: on loopback, for tests, it is the point.
logging.getLogger("mail.log").setLevel(logging.ERROR)
warnings.filterwarnings("ignore", message="Requiring AUTH while not requiring TLS")


def free_port():
    with contextlib.closing(socket.socket()) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclasses.dataclass(frozen=True)
class Received:
    mail_from: str
    rcpt_tos: tuple[str, ...]
    data: bytes
    message_id: str | None
    at: float


class _Handler:
    def __init__(self, sink):
        self.sink = sink

    async def handle_MAIL(self, server, session, envelope, address, mail_options):
        refusal = self.sink._take_refusal("mail", address)
        if refusal:
            return refusal
        envelope.mail_from = address
        envelope.mail_options.extend(mail_options)
        return "250 OK"

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        refusal = self.sink._take_refusal("rcpt", address)
        if refusal:
            return refusal
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        return self.sink._accept(server, envelope)


class SmtpSink:
    def __init__(self, users: dict[str, str] | None = None, local: dict | None = None, latency: float = 0.0,
                 size_limit: int = 0, maildir: str | None = None):
        self.users = users
        self.local = {address.lower(): account for address, account in (local or {}).items()}
        self.latency = latency
        self.size_limit = size_limit
        self.maildir = maildir
        self.host = "127.0.0.1"
        self.port = None
        self.messages: list[Received] = []
        self._counts = collections.Counter()
        self._refusals = []  # [stage, code, text, address, remaining]
        self._drop_after_data = 0
        self._lock = threading.Lock()
        self._controller = None

    # -- control --------------------------------------------------------------------

    def start(self, port=None):
        self.port = port or free_port()
        options = {"data_size_limit": self.size_limit or 0}
        if self.users is not None:
            options.update(auth_required=True, auth_require_tls=False, authenticator=self._authenticate)
        self._controller = Controller(_Handler(self), hostname=self.host, port=self.port, ready_timeout=10,
                                      **options)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            self._controller.start()
        return self

    def stop(self):
        if self._controller is not None:
            self._controller.stop()
            self._controller = None

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    def refuse(self, stage, code, text=None, address=None, count=1):
        """The next ``count`` MAIL / RCPT (of ``address``, or any) / DATA get ``code``."""
        text = text or {421: "4.3.2 Try again later", 450: "4.2.1 Mailbox busy, try later",
                        451: "4.3.0 Local error, try later", 452: "4.3.1 Insufficient storage",
                        550: "5.1.1 No such user here", 552: "5.3.4 Message too big",
                        554: "5.7.1 Message refused"}.get(code, "Refused")
        with self._lock:
            self._refusals.append([stage, code, text, address.lower() if address else None, count])

    def drop_after_data(self, count=1):
        """Accept the next message(s), then close the connection instead of answering 250."""
        with self._lock:
            self._drop_after_data += count

    # -- what it received -----------------------------------------------------------

    def count(self, message_id):
        with self._lock:
            return self._counts[message_id]

    def counts(self):
        with self._lock:
            return collections.Counter(self._counts)

    def wait_for(self, message_id, timeout=10.0):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.count(message_id):
                return True
            time.sleep(0.005)
        return False

    # -- the server side ------------------------------------------------------------

    def _authenticate(self, server, session, envelope, mechanism, auth_data):
        if isinstance(auth_data, LoginPassword):
            login = auth_data.login.decode("utf-8", "replace")
            password = auth_data.password.decode("utf-8", "replace")
            if self.users is not None and self.users.get(login) == password:
                return AuthResult(success=True)
        return AuthResult(success=False, handled=False)

    def _take_refusal(self, stage, address=None):
        with self._lock:
            for refusal in self._refusals:
                if refusal[0] == stage and (refusal[3] is None or refusal[3] == (address or "").lower()):
                    refusal[4] -= 1
                    if refusal[4] <= 0:
                        self._refusals.remove(refusal)
                    return f"{refusal[1]} {refusal[2]}"
        return None

    def _accept(self, server, envelope):
        refusal = self._take_refusal("data")
        if refusal:
            return refusal
        data = envelope.original_content or envelope.content
        if isinstance(data, str):
            data = data.encode("utf-8", "surrogateescape")
        headers = email.parser.BytesHeaderParser(policy=email.policy.compat32).parsebytes(data)
        message_id = (headers.get("Message-ID") or "").strip() or None
        for address in envelope.rcpt_tos:
            account = self.local.get(address.lower())
            if account is not None:
                self._deliver(account, data)
        with self._lock:
            self.messages.append(Received(envelope.mail_from, tuple(envelope.rcpt_tos), data, message_id,
                                          time.time()))
            self._counts[message_id] += 1
            drop = self._drop_after_data > 0
            if drop:
                self._drop_after_data -= 1
        if self.maildir:
            name = f"{int(time.time() * 1000)}-{len(self.messages)}.eml"
            with open(os.path.join(self.maildir, name), "wb") as out:
                out.write(data)
        if self.latency:
            time.sleep(self.latency)
        if drop:
            # Accepted, but the answer never reaches the client: the connection just ends.
            server.transport.abort()
        return "250 2.0.0 Accepted"

    @staticmethod
    def _deliver(account, data):
        client = account.client()
        try:
            client.append("INBOX", data)
        finally:
            client.logout()


def main(argv):
    """``python -m tests.harness.smtp_sink [port] [directory]``: a sink for the demo."""
    port = int(argv[1]) if len(argv) > 1 else 2525
    directory = argv[2] if len(argv) > 2 else None
    if directory:
        os.makedirs(directory, exist_ok=True)
    sink = SmtpSink(maildir=directory).start(port)
    print(f"SMTP sink on {sink.host}:{sink.port}" + (f", messages in {directory}" if directory else ""), flush=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        sink.stop()


if __name__ == "__main__":
    main(sys.argv)
