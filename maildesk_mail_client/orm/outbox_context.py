"""The sender's ports on an Odoo environment (DESIGN §3 "Send"), and its cron.

Same plumbing as the sync (engine_context.py): SQL on ``env.cr``, a
commit at every checkpoint (savepoints under the test runner), leases in
transactions of their own. Each provider's transport is built here from
the account's settings, read as superuser (passwords and tokens).
"""

import dataclasses
import logging
import time

from ..application.sending import SendSettings
from ..application.use_cases.send_outbox import SendPorts, send_due
from ..repositories import AccountLeaseRepository, FolderRepository, MessageIndexRepository
from ..repositories.conflicts import CONFLICTS
from ..repositories.lease_holders import is_dead_local_holder
from ..repositories.mailbox_account import PROVIDERS
from ..repositories.outbox import OutboxRepository
from .engine_context import OdooCheckpoint, OdooClock, OdooNotifier, lease_holder, lease_transaction

_logger = logging.getLogger(__name__)

SEND_CRON = "maildesk_mail_client.ir_cron_maildesk_send_outbox"


def transport_for(account):
    """The Transport of one account (sudo record): SMTP + IMAP, Gmail's API, or Graph."""
    if account.provider == "gmail":
        # Gmail and Graph file the Sent copy themselves and name it: the engine indexes it at once.
        from ..providers.gmail.transport import GmailTransport
        from .mailboxes import gmail_config

        return GmailTransport(gmail_config(account))
    if account.provider == "outlook":
        from ..providers.outlook.transport import OutlookTransport
        from .mailboxes import outlook_config

        return OutlookTransport(outlook_config(account))
    from ..providers.smtp.transport import SmtpTransport

    return SmtpTransport(account._maildesk_smtp_config(), account._maildesk_imap_config())


def send_settings(env):
    params = env["ir.config_parameter"].sudo()
    defaults = SendSettings()
    values = {}
    for name in ("proof_wait", "backoff_base", "backoff_cap", "batch"):
        try:
            values[name] = int(params.get_param(f"maildesk.send_{name}", getattr(defaults, name)))
        except (TypeError, ValueError):
            continue
    return dataclasses.replace(defaults, **values)


def send_ports(env, transports=None):
    """``transports`` replaces the account → Transport factory (tests)."""
    def build(account_id):
        return transport_for(env["mailbox.account"].sudo().browse(account_id))

    return SendPorts(
        outbox=OutboxRepository(env.cr), folders=FolderRepository(env.cr), index=MessageIndexRepository(env.cr),
        leases=AccountLeaseRepository(lease_transaction(env), is_dead=is_dead_local_holder),
        transports=transports or build, checkpoint=OdooCheckpoint(env), clock=OdooClock(),
        notifier=OdooNotifier(env), settings=send_settings(env), holder=lease_holder(), conflicts=CONFLICTS,
        providers=PROVIDERS,
    )


def run_sender(env, transports=None):
    """One cron call: every account with due rows, within the cron budget; then wake at the next due time."""
    ports = send_ports(env, transports)
    deadline = time.monotonic() + env["mailbox.account"]._maildesk_cron_budget()
    done, left = send_due(ports, deadline)
    env.invalidate_all()
    wake = OutboxRepository(env.cr).next_wake(ports.clock.now())
    if wake is not None:
        # A backoff, an undo window or the proof's wait ends then: no need to wait for the next minute.
        env.ref(SEND_CRON).sudo()._trigger(wake)
    _logger.info("MailDesk sender: %d account(s) served, %d with work left.", done, left)
    env["ir.cron"]._notify_progress(done=done, remaining=left)
    return done, left
