"""Access tokens for Microsoft Graph, from the account's refresh token, through msal.

Azure AD may hand out a new refresh token with every refresh (rotation);
the old one then stops working. The new one is therefore given to
``config.save_refresh_token`` *before* the access token is used, so a
worker killed right after a refresh still leaves the account with a
token that works.

msal is pointed at any authority (the tests' local one): it needs
``instance_discovery=False`` (or it asks login.microsoftonline.com), https
(it refuses anything else), and our own ``requests.Session`` as its HTTP
client, because it ignores its ``verify=`` when ``REQUESTS_CA_BUNDLE`` is
set. Tokens are never logged.
"""

from __future__ import annotations

import functools
import logging
import threading
import time

import msal
import requests

from ...application.errors import AuthenticationFailed, ConnectionFailed
from .config import OutlookConfig

_logger = logging.getLogger(__name__)

#: Graph's scopes are always named after graph.microsoft.com, whatever URL Graph is reached at.
#: msal adds offline_access (a refresh token) and openid/profile itself.
GRAPH_SCOPES = ("https://graph.microsoft.com/Mail.ReadWrite", "https://graph.microsoft.com/Mail.Send")

#: Azure AD's answers that only the user signing in again can fix.
_REFUSALS = ("invalid_grant", "interaction_required", "consent_required")
#: ... and those about the app itself (its secret expired, its id is wrong): an administrator's to fix.
_APP_REFUSALS = ("invalid_client", "unauthorized_client")
#: an access token this close to its expiry is renewed before use
_MARGIN = 120


def reconnect_message(reason: str) -> str:
    return (f"Microsoft refused the saved sign-in ({reason}): reconnect the account: "
            "MailDesk → Mailboxes → the account → Connect Outlook.")


def app_refused_message(reason: str) -> str:
    return (f"Microsoft refused MailDesk's app registration ({reason}): the app's client secret or id was "
            "refused: an administrator must update Settings → Outlook Credentials. Reconnecting the account "
            "will not help until then.")


def http_session(config: OutlookConfig, timeout: float | None = None) -> requests.Session:
    """A session that trusts ``config.ca_file`` when given, whatever REQUESTS_CA_BUNDLE says.

    requests lets the environment's CA bundle override ``session.verify``
    (psf/requests#3829) unless the session ignores the environment.
    ``timeout``: for every request of a caller that sets none (msal).
    """
    session = requests.Session()
    if config.ca_file:
        session.verify = config.ca_file
        session.trust_env = False
    if timeout is not None:
        session.request = functools.partial(session.request, timeout=timeout)
    return session


class TokenSource:
    """One account's access token, refreshed when it nears its expiry or when Graph refuses it."""

    def __init__(self, config: OutlookConfig):
        self._config = config
        self._session = http_session(config, timeout=config.timeout)
        self._refresh_token = config.refresh_token
        self._app = None
        # A kept token's expiry is wall-clock (it outlives this process); ours are on the monotonic clock.
        left = config.access_token_expires - time.time()
        self._access = config.access_token if config.access_token and left > _MARGIN else None
        self._expires = time.monotonic() + left if self._access else 0.0
        self._lock = threading.Lock()
        self._refused_grant = False
        self.refreshes = 0  # how many times Azure AD was asked (benchmarks, tests)

    def get(self, force: bool = False, stale: str | None = None) -> str:
        """A valid access token. ``force``: Graph refused ``stale``; get another unless a
        concurrent request already did."""
        with self._lock:
            fresh = self._access and time.monotonic() < self._expires - _MARGIN
            if fresh and (not force or self._access != stale):
                return self._access
            self._refresh()
            return self._access

    def _refresh(self) -> None:
        if not self._refresh_token:
            raise AuthenticationFailed(reconnect_message("no refresh token is saved"))
        try:
            self._redeem()
        except AuthenticationFailed:
            # Another worker (the delta cron, the reading pane, Test connection) may have redeemed the
            # token we hold and saved the one Azure AD rotated in: ours is dead, the account is fine.
            stored = self._config.load_refresh_token() if self._config.load_refresh_token else None
            if not stored or stored == self._refresh_token or not self._refused_grant:
                raise
            _logger.info("The refresh token of %s was rotated by another worker; using the saved one.",
                         self._config.email)
            self._refresh_token = stored
            self._redeem()

    def _redeem(self) -> None:
        self._refused_grant = False
        try:
            result = self._application().acquire_token_by_refresh_token(
                self._refresh_token, scopes=list(GRAPH_SCOPES))
        except requests.exceptions.SSLError as error:
            raise ConnectionFailed(f"The TLS handshake with Microsoft's sign-in service failed: "
                                   f"{type(error).__name__}. Check the CA bundle.", kind="tls") from error
        except requests.RequestException as error:
            raise ConnectionFailed(f"Microsoft's sign-in service could not be reached ({type(error).__name__}). "
                                   "The sync will retry.") from error
        except ValueError as error:  # msal: an answer that is not JSON (a proxy's page, a 5xx)
            raise ConnectionFailed(f"Microsoft's sign-in service gave an answer that is not a token "
                                   f"({str(error)[:200]}). The sync will retry.") from error
        self.refreshes += 1
        error = result.get("error")
        if error:
            # error_description never holds a token; it may hold a correlation id worth keeping.
            description = (result.get("error_description") or "").splitlines()[0][:300]
            reason = f"{error}: {description}" if description else error
            if error in _APP_REFUSALS:
                raise AuthenticationFailed(app_refused_message(reason))
            if error in _REFUSALS:
                self._refused_grant = error == "invalid_grant"
                raise AuthenticationFailed(reconnect_message(reason))
            raise ConnectionFailed(f"Microsoft's sign-in service could not renew the access token ({reason}). "
                                   "The sync will retry.")
        rotated = result.get("refresh_token")
        if rotated and rotated != self._refresh_token:
            # Saved before use: if saving fails, the old token still works and nothing is lost.
            self._config.save_refresh_token(rotated)
            self._refresh_token = rotated
            _logger.info("Microsoft rotated the refresh token of %s; the new one is saved.", self._config.email)
        self._access = result["access_token"]
        lifetime = float(result.get("expires_in") or 3600)
        self._expires = time.monotonic() + lifetime
        if self._config.save_access_token is not None:
            self._config.save_access_token(self._access, time.time() + lifetime)

    def _application(self):
        if self._app is None:
            try:
                self._app = msal.ConfidentialClientApplication(
                    self._config.client_id, client_credential=self._config.client_secret,
                    authority=self._config.authority, instance_discovery=False, http_client=self._session,
                    token_cache=msal.TokenCache())
            except requests.RequestException as error:
                raise ConnectionFailed(f"Microsoft's sign-in service ({self._config.authority}) could not be "
                                       f"reached ({type(error).__name__}). The sync will retry.") from error
            except ValueError as error:  # msal: the authority's OpenID configuration is missing or wrong
                raise ConnectionFailed(f"The sign-in authority {self._config.authority} did not describe "
                                       f"itself: {str(error)[:300]}") from error
        return self._app
