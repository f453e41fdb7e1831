"""Open an account's mailbox through its provider's adapter, with Odoo's settings and tokens.

Tokens are written beside the sync, never in its transaction:

- a rotated refresh token must survive whatever the run does next (a
  rollback, a crash): the old one may already be refused, and losing the
  new one costs the user a reconnect (odoo#109213 is this bug in Outlook);
- the sync's transaction must not write the account row: the row's
  ``write_date`` is how the engine tells "someone fixed the credentials
  meanwhile" from "the credentials are still bad".

So token columns are written in SQL (no ``write_date``) in a transaction
of their own that commits at once; under the test runner, a savepoint on
the test cursor stands in (as for leases).
"""

import contextlib
import time

import requests
from werkzeug.urls import url_join

from ..application.errors import AccountNotConfigured, AuthenticationFailed, ConnectionFailed
from ..providers.imap.mailbox import ImapMailbox
from ..repositories.conflicts import CONFLICTS
from .engine_context import _testing

#: Google's token endpoint and Gmail's API; both can be pointed elsewhere (a proxy, the tests' local Google).
GOOGLE_TOKEN_ENDPOINT = "https://oauth2.googleapis.com/token"
GMAIL_API_ENDPOINT = "https://gmail.googleapis.com"
GRAPH_URL = "https://graph.microsoft.com/v1.0"
MICROSOFT_AUTHORITY = "https://login.microsoftonline.com/common"

_RECONNECT_GMAIL = ("Google refused this account's saved sign-in ({reason}). Reconnect it: MailDesk → Mailboxes → "
                    "{account} → Connect Gmail, and sign in again with {email}.")
_RECONNECT_OUTLOOK = ("Microsoft refused this account's saved sign-in ({reason}). Reconnect it: MailDesk → "
                      "Mailboxes → {account} → Connect Outlook, and sign in again with {email}.")


def open_mailbox(account, settings):
    """The Mailbox port for ``account`` (a sudo record: the cron reads credentials users may not)."""
    if account.provider == "gmail":
        from ..providers.gmail import GmailMailbox

        return GmailMailbox(gmail_config(account))
    if account.provider == "outlook":
        from ..providers.outlook import OutlookMailbox

        return OutlookMailbox(outlook_config(account))
    return ImapMailbox.open_account(account._maildesk_imap_config(), settings.search_window)


def _param(env, name, default=None):
    return env["ir.config_parameter"].sudo().get_param(name, default)


@contextlib.contextmanager
def token_transaction(env):
    """A cursor whose writes are committed when the block ends, whatever the caller does next."""
    if _testing() or env.registry.in_test_mode():
        with env.cr.savepoint():
            yield env.cr
    else:
        with env.registry.cursor() as cr:
            # Before any statement: the row may be held by a form being saved; wait, then write.
            cr.execute("SET TRANSACTION ISOLATION LEVEL READ COMMITTED")
            yield cr


def saved_token(account, column):
    """A token column as committed now (another worker may have rotated it), read in a cursor of its own."""
    with token_transaction(account.env) as cr:
        # The column name is this module's constant.  # pylint: disable-next=sql-injection
        cr.execute(f"SELECT {column} FROM mailbox_account WHERE id = %s", [account.id])
        row = cr.fetchone()
    return row[0] if row else None


def store_tokens(account, values):
    """Write token columns of ``account`` in their own transaction, without touching write_date.

    READ COMMITTED, retried: a user saving the form or a cron stamping the
    row meanwhile must not make the write fail, as it would under Odoo's
    REPEATABLE READ, after the provider already retired the old token.
    """
    columns = ", ".join(f"{name} = %s" for name in values)
    for attempt in range(5):
        try:
            with token_transaction(account.env) as cr:
                # Column names are this module's constants.  # pylint: disable-next=sql-injection
                cr.execute(f"UPDATE mailbox_account SET {columns} WHERE id = %s", [*values.values(), account.id])
            break
        except CONFLICTS:
            if attempt == 4:
                raise
            time.sleep(0.05 * 2 ** attempt)
    account.invalidate_recordset(list(values))


# ----------------------------------------------------------------------
# Gmail: Odoo's google.gmail.mixin holds the tokens and the OAuth consent
# ----------------------------------------------------------------------

def gmail_config(account):
    from ..providers.gmail import GmailConfig

    if not account.google_gmail_refresh_token:
        raise AccountNotConfigured(
            f"{account.display_name} is not connected to Google yet: open it in MailDesk → Mailboxes and "
            f"press Connect Gmail.")
    env = account.env
    return GmailConfig(
        email=account.email or "",
        endpoint=_param(env, "maildesk.gmail_api_endpoint", GMAIL_API_ENDPOINT),
        token=lambda force_refresh=False: gmail_access_token(account, force_refresh),
        quota_per_minute=int(_param(env, "maildesk.gmail_quota_per_minute", 15000)),
    )


def gmail_access_token(account, force_refresh=False):
    """A valid access token: the stored one while it lives, else one refreshed through the mixin."""
    account.invalidate_recordset(["google_gmail_access_token", "google_gmail_access_token_expiration"])
    token, expires = account.google_gmail_access_token, account.google_gmail_access_token_expiration
    if token and expires and expires > time.time() + 60 and not force_refresh:
        return token
    token, expires = account._fetch_gmail_access_token(account.google_gmail_refresh_token)
    store_tokens(account, {"google_gmail_access_token": token, "google_gmail_access_token_expiration": expires})
    return token


def post_google_token(account, grant_type, values):
    """The token request of Odoo's mixin (same form), to ``maildesk.google_token_endpoint``.

    Refusals become the engine's errors: a revoked or expired grant needs a
    person (reconnect), anything else is retried later.
    """
    env = account.env
    endpoint = _param(env, "maildesk.google_token_endpoint") or GOOGLE_TOKEN_ENDPOINT
    try:
        response = requests.post(endpoint, data={
            "client_id": _param(env, "google_gmail_client_id"),
            "client_secret": _param(env, "google_gmail_client_secret"),
            "grant_type": grant_type,
            "redirect_uri": url_join(account.get_base_url(), "/google_gmail/confirm"),
            **values,
        }, timeout=10)
    except requests.RequestException as error:
        raise ConnectionFailed(f"Google's token endpoint could not be reached: {type(error).__name__}.") from error
    if response.ok:
        return response.json()
    error = _json_error(response)
    if response.status_code in (400, 401) and error in ("invalid_grant", "unauthorized_client", "invalid_client"):
        raise AuthenticationFailed(_RECONNECT_GMAIL.format(
            reason=error, account=account.display_name, email=account.email or "its address"))
    raise ConnectionFailed(f"Google's token endpoint answered {response.status_code} ({error or 'no reason'}); "
                           f"retrying later.")


def _json_error(response):
    try:
        return response.json().get("error")
    except ValueError:
        return None


# ----------------------------------------------------------------------
# Outlook: Odoo's microsoft.outlook.mixin does the consent; msal refreshes
# ----------------------------------------------------------------------

def outlook_config(account):
    from ..providers.outlook import OutlookConfig

    if not account.microsoft_outlook_refresh_token:
        raise AccountNotConfigured(
            f"{account.display_name} is not connected to Microsoft yet: open it in MailDesk → Mailboxes and "
            f"press Connect Outlook.")
    env = account.env
    return OutlookConfig(
        email=account.email or "",
        graph_url=_param(env, "maildesk.graph_url", GRAPH_URL),
        authority=_param(env, "maildesk.microsoft_authority", MICROSOFT_AUTHORITY),
        client_id=_param(env, "microsoft_outlook_client_id") or "",
        client_secret=_param(env, "microsoft_outlook_client_secret") or "",
        refresh_token=account.microsoft_outlook_refresh_token,
        save_refresh_token=lambda new: store_tokens(account, {"microsoft_outlook_refresh_token": new}),
        load_refresh_token=lambda: saved_token(account, "microsoft_outlook_refresh_token"),
        # Kept across runs: without it every 3-minute run would ask Azure AD (and rotate the refresh token).
        access_token=account.microsoft_outlook_access_token or None,
        access_token_expires=float(account.microsoft_outlook_access_token_expiration or 0),
        save_access_token=lambda token, expires: store_tokens(account, {
            "microsoft_outlook_access_token": token, "microsoft_outlook_access_token_expiration": int(expires)}),
        ca_file=_param(env, "maildesk.microsoft_ca_file") or None,
    )
