"""Open an authenticated IMAP connection, or say precisely why not.

The five ways a connection fails each get their own ``ConnectionFailed``
kind and a sentence naming the server and what to check: the admin reads
it on the account form after pressing "Test connection".
"""

from __future__ import annotations

import dataclasses
import imaplib
import logging
import ssl

from imapclient import IMAPClient
from imapclient.exceptions import LoginError

from ...application.errors import ConnectionFailed
from ..socket_failures import socket_failure
from .failures import login_failure, server_text, translated

_logger = logging.getLogger(__name__)

SECURITY_MODES = ("ssl", "starttls", "none")
#: Capabilities worth telling the admin about: they decide how cheap a sync is.
NOTABLE_CAPABILITIES = ("IDLE", "CONDSTORE", "QRESYNC", "SPECIAL-USE", "UIDPLUS", "MOVE")


@dataclasses.dataclass(frozen=True)
class ImapConfig:
    host: str
    port: int
    security: str  # one of SECURITY_MODES
    login: str
    password: str = dataclasses.field(repr=False)
    verify_tls: bool = True
    timeout: float = 20.0  # seconds, for connecting and for every answer
    oauth2_token: str | None = dataclasses.field(default=None, repr=False)  # XOAUTH2 instead of LOGIN

    def __post_init__(self):
        if self.security not in SECURITY_MODES:
            raise ValueError(f"IMAP security must be one of {', '.join(SECURITY_MODES)}, not {self.security!r}")

    @property
    def where(self) -> str:
        return f"{self.host}:{self.port}"


def connect(config: ImapConfig) -> IMAPClient:
    """A logged-in IMAPClient. Raises ConnectionFailed, AuthenticationFailed or ServerError."""
    client = _open(config)
    try:
        if config.security == "starttls":
            _start_tls(client, config)
        _log_in(client, config)
    except BaseException:
        drop(client)
        raise
    return client


def probe(config: ImapConfig) -> str:
    """Connect, log in and log out; a sentence for the "Test connection" button."""
    client = connect(config)
    try:
        with translated(config.where, "reading the server's capabilities"):
            capabilities = server_capabilities(client)
    finally:
        log_out(client)
    offered = [name for name in NOTABLE_CAPABILITIES if name in capabilities]
    message = (f"Connected to {config.where} and logged in as {config.login}. "
               f"The server offers {', '.join(offered) if offered else 'none of ' + ', '.join(NOTABLE_CAPABILITIES)}.")
    if "CONDSTORE" not in capabilities:
        message += " Without CONDSTORE, each sync reads the flags of every message, which is slower on big folders."
    return message


def server_capabilities(client: IMAPClient) -> frozenset[str]:
    return frozenset(_text(name).upper() for name in client.capabilities())


def log_out(client: IMAPClient) -> None:
    """Log out, quietly: the connection may already be gone, and nothing is lost if it is."""
    try:
        client.logout()
    except (imaplib.IMAP4.error, OSError, EOFError) as error:
        _logger.debug("Logging out of %s:%s failed: %s", client.host, client.port, error)
        drop(client)


def drop(client: IMAPClient) -> None:
    """Close the socket without LOGOUT: after a failure, a LOGOUT could only wait for the timeout again."""
    try:
        client.shutdown()
    except OSError as error:
        _logger.debug("Closing the socket to %s:%s failed: %s", client.host, client.port, error)


def _tls_context(config: ImapConfig) -> ssl.SSLContext:
    context = ssl.create_default_context()
    if not config.verify_tls:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context


def _open(config):
    use_ssl = config.security == "ssl"
    try:
        return IMAPClient(config.host, port=config.port, ssl=use_ssl,
                          ssl_context=_tls_context(config) if use_ssl else None, timeout=config.timeout)
    except (OSError, EOFError, imaplib.IMAP4.error) as error:
        raise _connect_failure(error, config) from error


def _start_tls(client, config):
    if b"STARTTLS" not in client.capabilities():
        raise ConnectionFailed(f"{config.where} does not offer STARTTLS, so the password would travel in clear. "
                               "Choose SSL/TLS (usually port 993), or ask the mail provider to enable TLS.",
                               kind="tls")
    try:
        client.starttls(_tls_context(config))
    except (OSError, EOFError) as error:
        raise _connect_failure(error, config) from error
    except imaplib.IMAP4.error as error:
        raise ConnectionFailed(f"{config.where} did not start TLS: {server_text(error)}. Try SSL/TLS on port 993.",
                               kind="tls") from error


def _log_in(client, config):
    if config.security == "none" and b"LOGINDISABLED" in client.capabilities():
        raise ConnectionFailed(f"{config.where} accepts logins only over TLS. Choose SSL/TLS (usually port 993) "
                               "or STARTTLS (usually port 143).", kind="tls")
    with translated(config.where, f"logging in as {config.login!r}"):
        try:
            if config.oauth2_token:
                client.oauth2_login(config.login, config.oauth2_token)
            else:
                client.login(config.login, config.password)
        except LoginError as error:
            raise login_failure(error, config.where, config.login) from error


def _connect_failure(error, config) -> ConnectionFailed:
    where = config.where
    failure = socket_failure(error, protocol="IMAP", host=config.host, port=config.port, where=where,
                             timeout=config.timeout, tls_port=993, starttls_port=143)
    if failure is not None:
        return failure
    if isinstance(error, imaplib.IMAP4.error):
        return ConnectionFailed(f"{where} accepted the connection but did not greet as an IMAP server "
                                f"({server_text(error)}). Check that this is the IMAP port.", kind="network")
    reason = getattr(error, "strerror", None) or error
    return ConnectionFailed(f"Cannot connect to {where}: {reason}. Check the network between "
                            "this server and the mail server.", kind="network")


def _text(value) -> str:
    return value.decode("ascii", "replace") if isinstance(value, bytes) else str(value)
