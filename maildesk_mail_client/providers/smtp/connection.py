"""Open an authenticated SMTP connection with smtplib, or say precisely why not.

The messages match the IMAP ones (providers/imap/connection.py): the host
and port, what was being done, and what the admin should check.
"""

from __future__ import annotations

import contextlib
import dataclasses
import smtplib
import ssl

from ...application.errors import AuthenticationFailed, ConnectionFailed, MailboxError
from ...application.sending import SendDeferred, SendRefused
from ..socket_failures import socket_failure

SECURITY_MODES = ("ssl", "starttls", "none")


@dataclasses.dataclass(frozen=True)
class SmtpConfig:
    host: str
    port: int
    security: str  # one of SECURITY_MODES
    login: str = ""  # empty: no AUTH (a relay that trusts the network)
    password: str = dataclasses.field(default="", repr=False)
    verify_tls: bool = True
    own_address: str = ""  # the account's address: also an envelope recipient (the proof, see transport.py)
    timeout: float = 30.0  # below the sender's lease (120 s), so a stuck server never outlives it
    local_hostname: str | None = None  # EHLO name; None: the machine's FQDN

    def __post_init__(self):
        if self.security not in SECURITY_MODES:
            raise ValueError(f"SMTP security must be one of {', '.join(SECURITY_MODES)}, not {self.security!r}")

    @property
    def where(self) -> str:
        return f"{self.host}:{self.port}"


def connect(config: SmtpConfig) -> smtplib.SMTP:
    """A connected, greeted (EHLO) and logged-in client. Raises the engine's errors."""
    client = _open(config)
    try:
        client.ehlo_or_helo_if_needed()
        if config.security == "starttls":
            _start_tls(client, config)
        if config.login:
            _log_in(client, config)
    except smtplib.SMTPServerDisconnected as error:
        drop(client)
        raise ConnectionFailed(f"{config.where} closed the connection while greeting: {error}. Check the port "
                               "and the security setting.", kind="network") from error
    except (smtplib.SMTPException, OSError) as error:
        drop(client)
        raise _failure(error, config, "greeting the server") from error
    except BaseException:
        drop(client)
        raise
    return client


def probe(config: SmtpConfig) -> str:
    """Connect, log in, quit; a sentence for the "Test SMTP" button."""
    client = connect(config)
    try:
        size = client.esmtp_features.get("size")
        tls = "TLS" if config.security != "none" else "no encryption"
    finally:
        quit_quietly(client)
    message = f"Connected to {config.where} ({tls})"
    message += f" and logged in as {config.login}." if config.login else " without logging in."
    if size and size.strip().isdigit() and int(size) > 0:
        message += f" The server accepts messages up to {int(size) / 1_000_000:.0f} MB."
    return message


def quit_quietly(client: smtplib.SMTP) -> None:
    try:
        client.quit()
    except (smtplib.SMTPException, OSError):
        drop(client)


def drop(client: smtplib.SMTP) -> None:
    with contextlib.suppress(OSError):
        client.close()


def _tls_context(config):
    context = ssl.create_default_context()
    if not config.verify_tls:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context


def _open(config):
    try:
        if config.security == "ssl":
            return smtplib.SMTP_SSL(config.host, config.port, timeout=config.timeout,
                                    context=_tls_context(config), local_hostname=config.local_hostname)
        return smtplib.SMTP(config.host, config.port, timeout=config.timeout, local_hostname=config.local_hostname)
    except (OSError, smtplib.SMTPException) as error:
        raise _failure(error, config, "connecting") from error


def _start_tls(client, config):
    if not client.has_extn("starttls"):
        raise ConnectionFailed(f"{config.where} does not offer STARTTLS, so the password would travel in clear. "
                               "Choose SSL/TLS (usually port 465), or ask the mail provider to enable TLS.",
                               kind="tls")
    try:
        client.starttls(context=_tls_context(config))
        client.ehlo()
    except smtplib.SMTPResponseException as error:
        raise ConnectionFailed(f"{config.where} did not start TLS: {reply_text(error)}. Try SSL/TLS on port 465.",
                               kind="tls") from error


def _log_in(client, config):
    if not client.has_extn("auth"):
        raise ConnectionFailed(
            f"{config.where} does not offer to log in (no AUTH){' before TLS' if config.security == 'none' else ''}. "
            "Choose SSL/TLS (usually port 465) or STARTTLS (usually port 587), or clear the login for a relay "
            "that needs none.", kind="tls" if config.security == "none" else "network")
    try:
        client.login(config.login, config.password)
    except smtplib.SMTPAuthenticationError as error:
        if 400 <= error.smtp_code < 500:
            raise SendDeferred(f"{config.where} cannot log {config.login!r} in right now: {reply_text(error)}. "
                               "Sending will retry.") from error
        raise AuthenticationFailed(f"{config.where} rejected the SMTP login {config.login!r}: {reply_text(error)}. "
                                   "Check the login and the password on the Sending (SMTP) tab (some providers "
                                   "require an app password).") from error
    except smtplib.SMTPNotSupportedError as error:
        raise ConnectionFailed(f"{config.where} offers no login method MailDesk supports: {error}.",
                               kind="network") from error


def reply_text(error) -> str:
    code = getattr(error, "smtp_code", None)
    text = getattr(error, "smtp_error", b"")
    text = text.decode("utf-8", "replace") if isinstance(text, bytes) else str(text)
    text = " ".join(text.split())
    return f"{code} {text}".strip() if code else (text or str(error))


def _failure(error, config, action) -> MailboxError:
    where = config.where
    failure = socket_failure(error, protocol="SMTP", host=config.host, port=config.port, where=where,
                             timeout=config.timeout, tls_port=465, starttls_port=587, during=f" while {action}")
    if failure is not None:
        return failure
    if isinstance(error, smtplib.SMTPConnectError):
        if 400 <= error.smtp_code < 500:
            return ConnectionFailed(f"{where} turned the connection away for now: {reply_text(error)}.",
                                    kind="refused")
        return SendRefused(f"{where} refuses connections from this server: {reply_text(error)}.")
    if isinstance(error, smtplib.SMTPServerDisconnected):
        return ConnectionFailed(f"{where} closed the connection while {action}: {error}. Check that this is the "
                                "SMTP port and the security setting.", kind="network")
    if isinstance(error, smtplib.SMTPResponseException):
        return ConnectionFailed(f"{where} answered {reply_text(error)} while {action}.", kind="network")
    reason = getattr(error, "strerror", None) or error
    return ConnectionFailed(f"Cannot connect to {where} while {action}: {reason}. Check the network between this "
                            "server and the mail server.", kind="network")
