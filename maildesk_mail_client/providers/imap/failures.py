"""imapclient, imaplib and socket exceptions, as the engine's errors.

Every message names the server and what we were doing, because it is shown
as is on the account form to a person who has to act on it.
"""

import contextlib
import imaplib
import re

from imapclient.exceptions import LoginError

from ...application.errors import AuthenticationFailed, ConnectionFailed, MailboxError, ServerError

_BYTES_REPR = re.compile(r"""b(['"])(.*?)\1""")
# RFC 5530 codes saying the login was fine but the server cannot serve it now.
_TEMPORARY_LOGIN_CODES = ("[UNAVAILABLE]", "[INUSE]", "[SERVERBUG]")


def server_text(error) -> str:
    """The server's words in an imaplib error, without Python's ``b'...'`` around them or a final period."""
    return _BYTES_REPR.sub(r"\2", str(error)).strip().rstrip(".") or type(error).__name__


def login_failure(error: LoginError, where: str, login: str) -> MailboxError:
    """imapclient reports any failure during LOGIN as LoginError; tell them apart."""
    text = server_text(error)
    if isinstance(error.__context__, imaplib.IMAP4.abort):
        return ConnectionFailed(f"The connection to {where} broke while logging in as {login!r}: {text}. "
                                "The sync will retry.", kind="network")
    if any(code in text.upper() for code in _TEMPORARY_LOGIN_CODES):
        return ServerError(f"{where} cannot serve {login!r} right now: {text}. The sync will retry.")
    return AuthenticationFailed(f"{where} rejected the login {login!r}: {text}. Check the login and the "
                                "password (some providers require an app password).")


@contextlib.contextmanager
def translated(where: str, action: str):
    """Run an IMAP exchange; whatever escapes it is a MailboxError."""
    try:
        yield
    except MailboxError:
        raise
    except LoginError as error:
        raise AuthenticationFailed(f"{where} rejected the credentials while {action}: "
                                   f"{server_text(error)}.") from error
    except imaplib.IMAP4.abort as error:  # before IMAP4.error: abort is a subclass
        raise ConnectionFailed(f"The connection to {where} broke while {action}: {server_text(error)}. "
                               "The sync will retry.", kind="network") from error
    except imaplib.IMAP4.error as error:
        raise ServerError(f"{where} refused {action}: {server_text(error)}.") from error
    except TimeoutError as error:  # before OSError: TimeoutError is a subclass
        raise ConnectionFailed(f"{where} stopped answering while {action}. The sync will retry; if this "
                               "keeps happening, check the network or raise the timeout.", kind="timeout") from error
    except (OSError, EOFError) as error:
        raise ConnectionFailed(f"The connection to {where} failed while {action}: {error}. The sync will retry.",
                               kind="network") from error
