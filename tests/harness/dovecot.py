"""A real Dovecot for the tests, started from a config in a temp dir.

``DovecotServer`` runs the Debian ``dovecot-imapd`` binary in the foreground
(``dovecot -F``) as a child of the test process, on free loopback ports: one
plain IMAP port that offers STARTTLS, and one IMAPS port, both with a
self-signed certificate made with ``openssl`` at start. Mail belongs to the
unprivileged ``dovecot`` user (Dovecot will not deliver mail as root);
logins go through a passwd-file of ``{PLAIN}`` passwords.

Profiles: ``capabilities`` sets ``imap_capability`` to hide extensions (the
``BASIC_CAPABILITIES`` server has no CONDSTORE/QRESYNC, like profile C);
``special_use=False`` drops the SPECIAL-USE mailbox attributes and
``tls=False`` turns TLS off (no STARTTLS, no IMAPS port), like an old server.

Seeding (``seed``) uses MULTIAPPEND with LITERAL+: one APPEND command per
batch of messages, no round trip per message, and fsync is off, so 10,000
messages take about a second. Messages, internal dates and therefore UIDs
are deterministic.

``scripts/run`` keeps its demo server instead: ``port`` fixes the plain IMAP
port and ``root`` keeps config, users and mail in that directory across runs
(stopped gracefully, never removed), so UIDs stay the same from run to run.
"""

from __future__ import annotations

import atexit
import contextlib
import dataclasses
import datetime as dt
import itertools
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import uuid
from email.message import EmailMessage
from email.policy import SMTP

from imapclient import IMAPClient

DOVECOT = shutil.which("dovecot") or "/usr/sbin/dovecot"
MAIL_USER = "dovecot"  # Debian's internal user; owns the mail, runs imap
LOGIN_USER = "dovenull"  # Debian's unprivileged login-process user
DH_PARAMS = "/usr/share/dovecot/dh.pem"

#: Profile C: what a plain IMAP4rev1 server with a few common extensions says.
BASIC_CAPABILITIES = (
    "IMAP4rev1 LITERAL+ SASL-IR LOGIN-REFERRALS ID ENABLE IDLE SORT NAMESPACE UIDPLUS LIST-EXTENDED SPECIAL-USE"
)

SPECIAL_USE = {"Sent": "\\Sent", "Drafts": "\\Drafts", "Trash": "\\Trash", "Junk": "\\Junk", "Archive": "\\Archive"}

SEED_EPOCH = dt.datetime(2024, 1, 1, tzinfo=dt.timezone.utc)
SEED_BATCH = 500  # messages per MULTIAPPEND: bounds memory, keeps one command per batch
START_TIMEOUT = 15.0


class DovecotUnavailable(RuntimeError):
    """Dovecot is not installed here (the fixtures skip, loudly)."""


@dataclasses.dataclass(frozen=True)
class ImapAccount:
    """One mailbox on a test server: where it is and how to log in."""

    host: str
    port: int
    login: str
    password: str
    ssl_port: int | None = None

    def client(self, timeout: float = 10.0) -> IMAPClient:
        """A logged-in plain-IMAP client, to seed mail or play "another client"."""
        client = IMAPClient(self.host, port=self.port, ssl=False, timeout=timeout)
        client.login(self.login, self.password)
        return client


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def make_message(subject="Hello", from_="Alice <alice@example.com>", to="Bob <bob@example.com>", date=None,
                 body="Hello.\n", message_id=None, in_reply_to=None, references=None, attachments=(),
                 cc=None, html=None) -> bytes:
    """An RFC 5322 message as bytes (CRLF line ends).

    ``date`` is a datetime (naive means UTC) or a raw header string;
    ``attachments`` are ``(filename, content_bytes, mime_type)`` triples.
    """
    msg = EmailMessage(policy=SMTP)
    msg["From"] = from_
    msg["To"] = to
    if cc:
        msg["Cc"] = cc
    msg["Subject"] = subject
    if date is not None:
        msg["Date"] = date if isinstance(date, str) else _rfc5322_date(date)
    if message_id:
        msg["Message-ID"] = message_id
    if in_reply_to:
        msg["In-Reply-To"] = in_reply_to
    if references:
        msg["References"] = references
    msg.set_content(body)
    if html:
        msg.add_alternative(html, subtype="html")
    for filename, content, mime_type in attachments:
        maintype, subtype = mime_type.split("/")
        msg.add_attachment(content, maintype=maintype, subtype=subtype, filename=filename)
    return msg.as_bytes()


def _rfc5322_date(value: dt.datetime) -> str:
    if value.tzinfo is None:
        value = value.replace(tzinfo=dt.timezone.utc)
    return value.strftime("%a, %d %b %Y %H:%M:%S %z")


def seed_message(number: int, subject: str | None = None) -> bytes:
    """The message ``seed`` appends as number ``number``: cheap to build, always the same."""
    date = _rfc5322_date(SEED_EPOCH + dt.timedelta(minutes=number))
    return (
        f"From: Sender {number} <sender{number}@example.com>\r\n"
        f"To: Me <me@example.com>\r\n"
        f"Subject: {subject or f'Message {number}'}\r\n"
        f"Date: {date}\r\n"
        f"Message-ID: <seed-{number}@maildesk.test>\r\n"
        f"MIME-Version: 1.0\r\n"
        f"Content-Type: text/plain; charset=utf-8\r\n"
        f"\r\n"
        f"Body of message {number}.\r\n"
    ).encode()


class DovecotServer:
    host = "127.0.0.1"

    def __init__(self, capabilities: str | None = None, special_use: bool = True, tls: bool = True,
                 port: int | None = None, root: str | None = None):
        self.capabilities = capabilities
        self.special_use = special_use
        self.tls = tls
        self.requested_port = port
        self.keep = root
        self.port = self.ssl_port = None
        self.root = None
        self._process = None
        self._users = {}

    # -- life cycle -------------------------------------------------------------

    def start(self) -> DovecotServer:
        if not os.path.exists(DOVECOT):
            raise DovecotUnavailable(f"Dovecot is not installed ({DOVECOT} not found): apt-get install dovecot-imapd")
        if os.geteuid() != 0:
            raise DovecotUnavailable("starting Dovecot with its own unprivileged users needs root")
        self.root = self.keep or tempfile.mkdtemp(prefix="maildesk-dovecot-")
        os.makedirs(self.root, exist_ok=True)
        # Dovecot's own users must traverse it, or authentication fails.
        os.chmod(self.root, 0o755)
        atexit.register(self.stop)
        try:
            self._prepare_files()
            self._launch()
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        atexit.unregister(self.stop)
        process, self._process = self._process, None
        if process is not None:
            # Only kept mail is worth a graceful shutdown (it takes a second); then
            # the whole process group, master and children, goes at once.
            if self.keep:
                process.terminate()
                with contextlib.suppress(subprocess.TimeoutExpired):
                    process.wait(timeout=10)
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait()
            _wait_group_gone(process.pid)
        if self.root and not self.keep:
            shutil.rmtree(self.root, ignore_errors=True)
            self.root = None

    # -- users and mail ---------------------------------------------------------

    def add_user(self, name: str | None = None, password: str = "secret") -> ImapAccount:
        """A new mailbox; ``name`` defaults to a unique one. Passwords may not contain ':'."""
        name = name or f"user-{uuid.uuid4().hex[:10]}"
        if not name.replace("-", "").replace("_", "").replace(".", "").isalnum() or name.startswith("."):
            raise ValueError(f"user name {name!r}: use letters, digits, '-', '_' and '.'")
        if ":" in password or "\n" in password:
            raise ValueError("a passwd-file password cannot contain ':' or a newline")
        # One passwd-file per user: Dovecot notices a changed shared file only
        # when its mtime moves, which misses two users added in one second.
        # A kept root has its users from the last run: their passwords are rewritten.
        with open(self._path("users", name), "w" if self.keep else "x") as passwd:
            passwd.write(f"{name}:{{PLAIN}}{password}\n")
        os.chmod(passwd.name, 0o644)
        account = ImapAccount(self.host, self.port, name, password, self.ssl_port)
        self._users[name] = account
        return account

    def client(self, user: ImapAccount | str) -> IMAPClient:
        account = self._users[user] if isinstance(user, str) else user
        return account.client()

    def seed(self, user: ImapAccount | str, folder: str = "INBOX", count: int = 100, start: int = 1,
             subject: str | None = None) -> None:
        """Append ``count`` messages ``seed_message(start..)``, creating ``folder`` if needed.

        Internal dates follow the message numbers, so a seeded folder is the
        same every run.
        """
        client = self.client(user)
        try:
            if not client.folder_exists(folder):
                client.create_folder(folder)
            # A profile may hide MULTIAPPEND from clients; the Dovecot behind
            # it still has it, and the seeder is not the client under test.
            multiappend = IMAPClient.multiappend.__wrapped__
            for batch in _batched(range(start, start + count), SEED_BATCH):
                multiappend(client, folder, [
                    {"msg": seed_message(n, subject), "date": SEED_EPOCH + dt.timedelta(minutes=n)} for n in batch
                ])
        finally:
            client.logout()

    def kick(self, user: ImapAccount | str) -> None:
        """Drop every connection of ``user``, as a server restart or an admin would."""
        self._doveadm("kick", _login(user))

    @contextlib.contextmanager
    def frozen(self, user: ImapAccount | str):
        """Inside the block, ``user``'s open connections accept bytes but never answer (SIGSTOP)."""
        lines = self._doveadm("who", "-1", _login(user)).splitlines()[1:]
        pids = [int(line.split()[2]) for line in lines]
        for pid in pids:
            os.kill(pid, signal.SIGSTOP)
        try:
            yield
        finally:
            for pid in pids:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGCONT)

    def log(self) -> str:
        try:
            with open(self._path("dovecot.log"), errors="replace") as log:
                return log.read()
        except OSError:
            return ""

    def effective_capabilities(self) -> frozenset[str]:
        """What a logged-in client is told, to check a profile really hides what it should."""
        client = self.add_user().client()
        try:
            return frozenset(c.decode().upper() for c in client.capabilities())
        finally:
            client.logout()

    # -- internals --------------------------------------------------------------

    def _path(self, *parts):
        return os.path.join(self.root, *parts)

    def _doveadm(self, *args) -> str:
        doveadm = shutil.which("doveadm") or "/usr/bin/doveadm"
        command = [doveadm, "-c", self._path("dovecot.conf"), *args]
        return subprocess.run(command, check=True, capture_output=True, text=True).stdout

    def _prepare_files(self):
        mail_user = pwd.getpwnam(MAIL_USER)
        mail_root = self._path("mail")
        os.makedirs(mail_root, 0o755, exist_ok=True)
        os.chown(mail_root, mail_user.pw_uid, mail_user.pw_gid)
        os.makedirs(self._path("users"), 0o755, exist_ok=True)
        if self.tls:
            subprocess.run(
                ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
                 "-nodes", "-days", "2", "-subj", "/CN=localhost",
                 "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1",
                 "-keyout", self._path("key.pem"), "-out", self._path("cert.pem")],
                check=True, capture_output=True)

    def _launch(self):
        for _attempt in range(3):  # a free port can be taken between our check and Dovecot's bind
            self.port, self.ssl_port = self.requested_port or free_port(), (free_port() if self.tls else None)
            with open(self._path("dovecot.conf"), "w") as conf:
                conf.write(self._config())
            log_start = len(self.log())
            # stderr to a file, not a pipe: nobody reads a pipe, and a full one blocks Dovecot.
            with open(self._path("stderr.log"), "wb") as stderr:
                self._process = subprocess.Popen([DOVECOT, "-F", "-c", self._path("dovecot.conf")],
                                                 stdout=subprocess.DEVNULL, stderr=stderr, start_new_session=True)
            if self._wait_ready():
                return
            failure = self._failure_text(log_start)
            self._process.kill()
            self._process.wait()
            self._process = None
            if "Address already in use" not in failure or self.requested_port:
                raise RuntimeError(f"Dovecot did not start:\n{failure}")
        raise RuntimeError(f"Dovecot did not start: ports kept being taken:\n{failure}")

    def _wait_ready(self):
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline and self._process.poll() is None:
            if _greets(self.host, self.port):
                return True
            time.sleep(0.02)
        return False

    def _failure_text(self, log_start):
        with open(self._path("stderr.log"), errors="replace") as stderr:
            return (stderr.read() + self.log()[log_start:]).strip() or "(no output)"

    def _config(self):
        mail_user = pwd.getpwnam(MAIL_USER)
        special_use = "".join(
            f'  mailbox "{name}" {{\n    special_use = {flag}\n  }}\n' for name, flag in SPECIAL_USE.items()
        ) if self.special_use else ""
        if self.tls:
            tls = f"ssl = yes\nssl_cert = <{self._path('cert.pem')}\nssl_key = <{self._path('key.pem')}\n"
            if os.path.exists(DH_PARAMS):
                tls += f"ssl_dh = <{DH_PARAMS}\n"
        else:
            tls = "ssl = no\n"
        return CONFIG.format(
            root=self.root, instance=os.path.basename(self.root), host=self.host, port=self.port,
            ssl_port=self.ssl_port or 0, uid=mail_user.pw_uid, gid=mail_user.pw_gid, tls=tls,
            special_use=special_use, capability=f"imap_capability = {self.capabilities}" if self.capabilities else "",
            mail_user=MAIL_USER, login_user=LOGIN_USER)


CONFIG = """\
instance_name = maildesk-{instance}
base_dir = {root}/run
state_dir = {root}/state
log_path = {root}/dovecot.log
protocols = imap
listen = {host}
default_internal_user = {mail_user}
default_login_user = {login_user}
first_valid_uid = {uid}
last_valid_uid = {uid}
auth_mechanisms = plain login
disable_plaintext_auth = no
auth_verbose = yes
# Failed logins are tested on purpose: answer them on Dovecot's next 0.5 s tick, not after 2 s.
auth_failure_delay = 0
{tls}
passdb {{
  driver = passwd-file
  args = scheme=PLAIN username_format=%u {root}/users/%u
}}
userdb {{
  driver = static
  args = uid={uid} gid={gid} home={root}/mail/%u
}}
mail_location = sdbox:~/mail
# Test mail is disposable: skip fsync, it dominates bulk APPEND time.
mail_fsync = never
namespace inbox {{
  inbox = yes
  separator = /
{special_use}}}
protocol imap {{
  mail_max_userip_connections = 1000
  {capability}
}}
# No growing penalty for an address after failed logins, for the same reason.
service anvil {{
  unix_listener anvil-auth-penalty {{
    mode = 0
  }}
}}
service imap-login {{
  inet_listener imap {{
    address = {host}
    port = {port}
  }}
  inet_listener imaps {{
    address = {host}
    port = {ssl_port}
    ssl = yes
  }}
}}
"""


def _login(user: ImapAccount | str) -> str:
    return user if isinstance(user, str) else user.login


def _greets(host, port):
    """True once ``port`` answers with an IMAP greeting.

    The master binds every listener before it serves any, so a greeting on
    the plain port means the IMAPS port is up too.
    """
    try:
        with socket.create_connection((host, port), timeout=1) as sock:
            return sock.recv(64).startswith(b"* OK")
    except OSError:
        return False


def _wait_group_gone(pgid, timeout=5.0):
    """Return once no process of the group is alive.

    The killed children are orphans that init reaps in its own time; a zombie
    holds no port and no file, so only living processes are waited for.
    """
    deadline = time.monotonic() + timeout
    while living_processes(pgid):
        if time.monotonic() > deadline:
            raise RuntimeError(f"Dovecot processes {living_processes(pgid)} outlived SIGKILL by {timeout:g} s")
        time.sleep(0.01)


def living_processes(pgid):
    living = []
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            try:
                with open(f"/proc/{entry.name}/stat", "rb") as stat:
                    # pid (comm) state ppid pgrp ...; comm may contain spaces and parentheses
                    state, _ppid, group = stat.read().rsplit(b")", 1)[1].split()[:3]
            except OSError:
                continue  # gone while we looked
            if int(group) == pgid and state != b"Z":
                living.append(int(entry.name))
    return living


def _batched(items, size):
    iterator = iter(items)
    while batch := list(itertools.islice(iterator, size)):
        yield batch

