"""Errors the engine understands.

Providers translate their libraries' exceptions into these, so the engine
can decide what to do (back off, ask the admin to reconnect, reconcile
folders) without knowing imapclient, googleapiclient or requests.
Every message is written for the admin who reads it on the account form.
"""


class MailboxError(Exception):
    """Base class. ``str(error)`` is a sentence a human can act on."""

    #: transient errors are retried with backoff; others need a person
    transient = True


class AuthenticationFailed(MailboxError):
    """The server refused the credentials or the token was revoked.

    The account goes to "reconnect needed" and the crons skip it until an
    admin fixes it: retrying a bad password only gets the account locked.
    """

    transient = False


class AccountNotConfigured(MailboxError):
    """Server, login or another setting is missing: only an admin can fix it."""

    transient = False


class ConnectionFailed(MailboxError):
    """The server could not be reached or spoken to.

    ``kind`` is one of ``host`` (name does not resolve), ``refused``,
    ``tls``, ``timeout``, ``network`` (anything else on the socket).
    """

    def __init__(self, message, kind="network"):
        super().__init__(message)
        self.kind = kind


class ServerError(MailboxError):
    """The server answered, but with an error we did not expect.

    Raised while working on one folder, it is recorded on that folder and
    the others carry on: one folder the server refuses to open must not
    stop the account's INBOX.
    """


class FolderNotFound(MailboxError):
    """A folder we know of is gone on the server (deleted or renamed).

    ``proven``: the server said so (IMAP ``[NONEXISTENT]``, HTTP 404), as
    opposed to the folder merely missing from a listing.
    """

    def __init__(self, message, path=None, proven=True):
        super().__init__(message)
        self.path = path
        self.proven = proven


class CursorExpired(MailboxError):
    """The provider no longer knows the change cursor we stored.

    Gmail answers 404 to an old ``startHistoryId``, Graph 410 Gone /
    ``syncStateNotFound`` / ``resyncRequired`` to an old deltaLink. Nothing
    is lost: the engine takes a fresh cursor and reconciles by message id,
    so unchanged rows are left alone.
    """
