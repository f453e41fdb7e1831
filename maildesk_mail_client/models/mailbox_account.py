import logging
import math
import time

from odoo import api, fields, models
from odoo.exceptions import AccessError, UserError
from odoo.tools import config

from ..application.errors import AccountNotConfigured, MailboxError
from ..application.use_cases import backfill, bootstrap_account, repair_sparse, sync_account
from ..orm.engine_context import engine_context, settings_from_params
from ..orm.int8 import Int8
from ..orm.mailboxes import open_mailbox, post_google_token, store_tokens
from ..providers.imap.connection import ImapConfig, probe
from ..providers.smtp.connection import SmtpConfig
from ..providers.smtp.connection import probe as smtp_probe
from ..repositories import AccountRepository
from ..repositories.mailbox_account import PROVIDERS

_logger = logging.getLogger(__name__)

# The cron that brings each provider's changes (DESIGN §4: IMAP 3 min, Gmail 2 min, Outlook 3 min).
_INCREMENTAL_CRONS = {
    "imap": "maildesk_mail_client.ir_cron_maildesk_imap_incremental",
    "gmail": "maildesk_mail_client.ir_cron_maildesk_gmail_incremental",
    "outlook": "maildesk_mail_client.ir_cron_maildesk_outlook_delta",
}


# Seconds between two "Sync now" of one account: each one may be a login
# attempt, and a provider locks a mailbox after a few failed ones.
_SYNC_REQUEST_INTERVAL = 60

# Changing any of these may fix what made the account need a reconnect.
_CREDENTIAL_FIELDS = {
    "imap_host", "imap_port", "imap_security", "imap_login", "imap_password", "imap_verify_tls",
    "google_gmail_refresh_token", "microsoft_outlook_refresh_token",
}


class MailboxAccount(models.Model):
    _name = "mailbox.account"
    _description = "Mailbox Account"
    _inherit = ["mail.thread", "bus.listener.mixin", "google.gmail.mixin", "microsoft.outlook.mixin"]
    _order = "name, id"

    # Graph, not IMAP: the Outlook provider reads and sends mail through Microsoft Graph.
    _OUTLOOK_SCOPE = "https://graph.microsoft.com/Mail.ReadWrite https://graph.microsoft.com/Mail.Send"

    name = fields.Char(required=True, tracking=True)
    email = fields.Char(string="Email Address")
    provider = fields.Selection(
        [("imap", "IMAP"), ("gmail", "Gmail"), ("outlook", "Outlook / Microsoft 365")],
        required=True, default="imap", tracking=True,
    )
    active = fields.Boolean(default=True)
    sync_enabled = fields.Boolean(default=True, tracking=True,
                                  help="Untick to pause every scheduled sync of this account.")

    # Who may see it
    user_id = fields.Many2one("res.users", string="Owner", required=True, index=True,
                              default=lambda self: self.env.user, tracking=True)
    is_shared = fields.Boolean(string="Shared", tracking=True,
                               help="Also readable by the users listed in Shared With.")
    access_user_ids = fields.Many2many(
        "res.users", "maildesk_account_access_rel", "account_id", "user_id",
        string="Shared With", help="Users who may read this shared mailbox, besides its owner.",
    )
    shared_users_may_send = fields.Boolean(
        default=False, tracking=True,
        help="Reading a mailbox does not let one send as it: when set, the users it is shared with may also "
             "send from its address. Its owner and MailDesk administrators always may.")

    # IMAP connection
    imap_host = fields.Char(string="IMAP Server")
    imap_port = fields.Integer(string="Port", default=993)
    imap_security = fields.Selection(
        [("ssl", "SSL/TLS"), ("starttls", "STARTTLS"), ("none", "None (plain text)")],
        string="Security", default="ssl",
    )
    imap_login = fields.Char(string="Login")
    imap_password = fields.Char(string="Password", groups="maildesk_mail_client.group_maildesk_admin",
                                copy=False)
    imap_verify_tls = fields.Boolean(string="Verify Certificate", default=True,
                                     help="Untick only for a server with a self-signed certificate you trust.")

    # SMTP, for sending from IMAP accounts (Gmail and Outlook send through their APIs)
    smtp_host = fields.Char(string="SMTP Server")
    smtp_port = fields.Integer(string="SMTP Port", default=465)
    smtp_security = fields.Selection(
        [("ssl", "SSL/TLS"), ("starttls", "STARTTLS"), ("none", "None (plain text)")],
        string="SMTP Security", default="ssl",
    )
    smtp_login = fields.Char(string="SMTP Login", help="Leave empty to use the IMAP login.")
    smtp_password = fields.Char(string="SMTP Password", groups="maildesk_mail_client.group_maildesk_admin",
                                copy=False, help="Leave empty to use the IMAP password.")

    # Sync state, written by the engine
    auth_state = fields.Selection(
        [("ok", "Connected"), ("reconnect_needed", "Reconnect Needed")],
        default="ok", required=True, readonly=True,
    )
    last_sync_at = fields.Datetime(string="Last Sync", readonly=True)
    last_error = fields.Text(readonly=True)
    last_error_at = fields.Datetime(readonly=True)
    failure_count = fields.Integer(readonly=True, help="Failed sync runs in a row.")
    backoff_until = fields.Datetime(readonly=True, help="No sync is attempted before this time.")
    sync_requested_at = fields.Datetime(readonly=True, copy=False,
                                        help="Last time someone pressed Sync now (at most one a minute).")
    folders_synced_at = fields.Datetime(readonly=True)
    mailbox_identity = fields.Char(
        readonly=True, copy=False,
        help="The mailbox the index was built from (server and login). When it changes, what was indexed "
             "from the old mailbox is dropped.")
    gmail_history_id = Int8(readonly=True, copy=False)
    # The alias scan's high-water mark (use_cases/ingest.py): every index row of this
    # account up to this id has been looked at. Written in SQL only, never bumping write_date.
    ingest_scan_mark = fields.Integer(readonly=True, copy=False, groups="base.group_system")
    sync_status = fields.Selection(
        [("bootstrap", "Loading"), ("ok", "Up to date"), ("backoff", "Retrying later"),
         ("reconnect_needed", "Reconnect needed"), ("paused", "Paused")],
        compute="_compute_sync_status",
    )

    folder_ids = fields.One2many("maildesk.folder", "account_id", string="Folders")
    folder_count = fields.Integer(compute="_compute_counts")
    message_count = fields.Integer(string="Indexed Messages", compute="_compute_counts")

    _sql_constraints = [
        ("imap_port_range", "CHECK(imap_port IS NULL OR (imap_port >= 0 AND imap_port <= 65535))",
         "The port must be between 0 and 65535."),
        ("smtp_port_range", "CHECK(smtp_port IS NULL OR (smtp_port >= 0 AND smtp_port <= 65535))",
         "The SMTP port must be between 0 and 65535."),
    ]

    @api.depends("auth_state", "backoff_until", "sync_enabled", "folder_ids.sync_state")
    def _compute_sync_status(self):
        now = fields.Datetime.now()
        for account in self:
            if not account.sync_enabled:
                account.sync_status = "paused"
            elif account.auth_state == "reconnect_needed":
                account.sync_status = "reconnect_needed"
            elif account.backoff_until and account.backoff_until > now:
                account.sync_status = "backoff"
            elif not account.folders_synced_at or any(
                f.sync_state != "incremental" for f in account.folder_ids if f.selectable
            ):
                account.sync_status = "bootstrap"
            else:
                account.sync_status = "ok"

    def _compute_counts(self):
        folders = dict(self.env["maildesk.folder"]._read_group(
            [("account_id", "in", self.ids)], ["account_id"], ["__count"]))
        messages = dict(self.env["maildesk.message_index"]._read_group(
            [("account_id", "in", self.ids), ("deleted_on_server", "=", False)], ["account_id"], ["__count"]))
        for account in self:
            account.folder_count = folders.get(account, 0)
            account.message_count = messages.get(account, 0)

    # ------------------------------------------------------------------
    # CRUD: a fixed credential ends "reconnect needed"; a new account syncs now
    # ------------------------------------------------------------------

    @api.model_create_multi
    def create(self, vals_list):
        accounts = super().create(vals_list)
        accounts._maildesk_wake_sync()
        return accounts

    def write(self, vals):
        # Rotated tokens are written in SQL (orm/mailboxes.store_tokens): only a person's edit gets here.
        if _CREDENTIAL_FIELDS & set(vals) and "auth_state" not in vals:
            vals = {**vals, "auth_state": "ok", "failure_count": 0, "backoff_until": False}
        result = super().write(vals)
        if _CREDENTIAL_FIELDS & set(vals) or vals.get("sync_enabled"):
            self._maildesk_wake_sync()
        return result

    # ------------------------------------------------------------------
    # Buttons
    # ------------------------------------------------------------------

    def _maildesk_may_edit_connection(self):
        """Whether the current user may change (and so test) this account's connection.

        The connection belongs to MailDesk administrators: they alone may
        write accounts (ir.model.access.csv) and read passwords. The group is
        checked besides write access because a probe sends the stored
        password to the stored host: were users ever allowed to edit their
        own account's server, they must still not make it send a password
        they cannot read to a host of their choosing. Server code running
        sudo is trusted.
        """
        return self.env.su or (self.env.user.has_group("maildesk_mail_client.group_maildesk_admin")
                               and self.has_access("write"))

    def action_test_connection(self):
        self.ensure_one()
        # Buttons are RPC endpoints: the view hides this one from users, but
        # only this check stops a reader of a shared mailbox from making the
        # server log in (and fail, and lock the mailbox) or probe a host.
        self.check_access("write")
        if not self._maildesk_may_edit_connection():
            raise AccessError(self.env._(
                "Only a MailDesk administrator may test the connection of %s.", self.display_name))
        try:
            if self.provider == "imap":
                message = probe(self.sudo()._maildesk_imap_config())
            else:
                message = self.sudo()._maildesk_probe_oauth()
        except MailboxError as error:  # includes AccountNotConfigured
            raise UserError(str(error)) from error
        return {
            "type": "ir.actions.client",
            "tag": "display_notification",
            "params": {"title": self.env._("Connection successful"), "message": message,
                       "type": "success", "sticky": False},
        }

    def action_test_smtp(self):
        self.ensure_one()
        # As Test connection: the probe sends the stored password to the stored host.
        self.check_access("write")
        if not self._maildesk_may_edit_connection():
            raise AccessError(self.env._(
                "Only a MailDesk administrator may test the SMTP connection of %s.", self.display_name))
        try:
            message = smtp_probe(self.sudo()._maildesk_smtp_config())
        except MailboxError as error:
            raise UserError(str(error)) from error
        return {
            "type": "ir.actions.client",
            "tag": "display_notification",
            "params": {"title": self.env._("SMTP connection successful"), "message": message,
                       "type": "success", "sticky": False},
        }

    def _maildesk_smtp_config(self):
        self.ensure_one()
        if not (self.smtp_host and self.smtp_port and self.smtp_security):
            raise AccountNotConfigured(self.env._(
                "Account %s has no SMTP server: set it on the Sending (SMTP) tab.", self.display_name))
        return SmtpConfig(
            host=self.smtp_host, port=self.smtp_port, security=self.smtp_security,
            login=self.smtp_login or self.imap_login or "", password=self.smtp_password or self.imap_password or "",
            verify_tls=self.imap_verify_tls, own_address=self.email or "",
        )

    def action_sync_now(self):
        # Anyone who can read the account may ask for a retry; only the sync
        # state is reset, so sudo does not widen what the user can change.
        self.check_access("read")
        now = fields.Datetime.now()
        for account in self:
            # A reconnect is needed because the provider refused the login:
            # retrying before someone fixes the credentials only adds failed
            # logins, so only those who may fix them may force a retry.
            if account.auth_state == "reconnect_needed" and not account._maildesk_may_edit_connection():
                raise UserError(self.env._(
                    "%(account)s needs a reconnect: the server refused its login. Ask %(owner)s or a "
                    "MailDesk administrator to fix its credentials; it syncs again as soon as they do.",
                    account=account.display_name, owner=account.user_id.display_name))
            # Each request may be a login attempt, so it is rate-limited per
            # account, for everyone: an RPC loop must not lock the mailbox.
            # Server code running sudo (the demo set-up) is trusted, as for
            # every other check.
            # abs(): hosts whose clocks disagree a little still limit each other.
            requested_at = account.sync_requested_at
            elapsed = abs((now - requested_at).total_seconds()) if requested_at else None
            if not self.env.su and elapsed is not None and elapsed < _SYNC_REQUEST_INTERVAL:
                raise UserError(self.env._(
                    "A sync of %(account)s was requested less than a minute ago. "
                    "Try again in %(seconds)s seconds.",
                    account=account.display_name, seconds=max(1, math.ceil(_SYNC_REQUEST_INTERVAL - elapsed))))
        # sudo: readers may not write the account; the timestamp is what makes
        # the rate limit hold. Two concurrent requests both update this row:
        # the second waits for the first and then fails to serialize (Odoo runs
        # REPEATABLE READ), and is retried, so it sees the first one's time.
        self.sudo().write({"sync_requested_at": now, "auth_state": "ok", "failure_count": 0,
                           "backoff_until": False})
        self._maildesk_wake_sync()
        return {
            "type": "ir.actions.client",
            "tag": "display_notification",
            "params": {"message": self.env._("Sync started. New mail appears in a few seconds."),
                       "type": "info", "sticky": False},
        }

    def action_open_folders(self):
        self.ensure_one()
        return {
            "type": "ir.actions.act_window",
            "name": self.env._("Folders"),
            "res_model": "maildesk.folder",
            "view_mode": "list,form",
            "domain": [("account_id", "=", self.id)],
            "context": {"default_account_id": self.id},
        }

    def action_open_messages(self):
        self.ensure_one()
        action = self.env["ir.actions.act_window"]._for_xml_id("maildesk_mail_client.action_maildesk_message_index")
        action["domain"] = [("account_id", "=", self.id)]
        return action

    def _fetch_gmail_token(self, grant_type, **values):
        """Odoo's Gmail token request, to a configurable endpoint, keeping a rotated refresh token.

        Odoo's mixin posts to Google's address, written in the method, and
        keeps the first refresh token forever. Ours posts to
        ``maildesk.google_token_endpoint`` when set (a proxy, the tests'
        local Google), and when Google answers a refresh with a new refresh
        token, saves it at once in a transaction of its own: the old one may
        stop working, and a rollback of the sync must not lose the new one.
        """
        try:
            response = post_google_token(self, grant_type, values)
        except MailboxError as error:
            if grant_type == "refresh_token":
                raise  # the engine decides: reconnect needed, or retry later
            raise UserError(str(error)) from error
        rotated = response.get("refresh_token")
        if grant_type == "refresh_token" and rotated and self:
            for account in self.sudo().filtered(lambda account: account.google_gmail_refresh_token != rotated):
                store_tokens(account, {"google_gmail_refresh_token": rotated})
        return response

    # ------------------------------------------------------------------
    # Extension points (no-ops in Basic; Pro overrides them)
    # ------------------------------------------------------------------

    @api.model
    def _maildesk_after_message_index_upserted(self, account_id, folder, uid, index_id, is_new):
        """Called after every index row the engine inserted or changed.

        ``uid`` is the IMAP UID, or None for providers without one (the
        row's ``remote_id`` identifies it then). ``is_new`` is true once per
        row: for new mail, and also for every message of a folder re-indexed
        after a UIDVALIDITY change or an ambiguous rename (its old rows were
        dropped). The call happens before the step is committed, in a
        savepoint: if it raises, what it wrote is undone, the error is
        logged and shown on the folder, and the index row is kept.
        """

    @api.model
    def _maildesk_after_message_index_upserted_batch(self, account_id, folder, rows):
        """What the engine calls: every row one sync step inserted or changed.

        ``rows`` are ``UpsertResult`` values (``remote_id``, ``uid`` -- the
        IMAP UID or None --, ``index_id``, ``is_new``). The default hands each
        to the per-row hook, so an add-on that overrides only that one still
        sees every row; one that has a cheaper way for a whole batch (one
        INSERT into its queue) overrides this instead.
        """
        for row in rows:
            self._maildesk_after_message_index_upserted(account_id, folder, row.uid, row.index_id, row.is_new)

    @api.model
    def _maildesk_enqueue_folder_open_prefetch(self, account_id, folder_id, top_index_ids):
        """Called when a folder list is rendered, with the rows on screen."""

    # ------------------------------------------------------------------
    # Engine plumbing
    # ------------------------------------------------------------------

    def _maildesk_imap_config(self):
        self.ensure_one()
        if not (self.imap_host and self.imap_login and self.imap_port and self.imap_security):
            raise AccountNotConfigured(self.env._(
                "Account %s is missing its IMAP server, port, security or login.", self.display_name))
        return ImapConfig(
            host=self.imap_host, port=self.imap_port, security=self.imap_security,
            login=self.imap_login, password=self.imap_password or "",
            verify_tls=self.imap_verify_tls,
        )

    def _maildesk_probe_oauth(self):
        """Sign in through the provider's API and list the folders, as a sync would."""
        mailbox = open_mailbox(self, settings_from_params(self.env))
        try:
            identity, folders = mailbox.identity, mailbox.list_folders()
        finally:
            mailbox.close()
        return self.env._("Signed in as %(identity)s; %(count)s folders.", identity=identity.split(":", 1)[-1],
                          count=len(folders))

    def _maildesk_notify_index_changed(self, payload):
        """One notification per sync run, to each user who may read the account now.

        The readers are worked out when the notification is sent, and each
        gets it on their own partner channel (every logged-in tab listens on
        it): a user removed from a shared mailbox stops receiving its
        notifications at once. A per-account channel would keep them
        subscribed until their browser reconnects.
        """
        self.ensure_one()
        for partner in self._maildesk_readers().partner_id:
            partner._bus_send("maildesk/index_changed", payload)

    def _maildesk_readers(self):
        """The users the record rules let read this account: owner, shared-with, administrators."""
        self.ensure_one()
        users = self.user_id | self.env.ref("maildesk_mail_client.group_maildesk_admin").sudo().users
        if self.is_shared:
            users |= self.access_user_ids
        return users.filtered(lambda user: user.active and user.has_group("maildesk_mail_client.group_maildesk_user"))

    def _maildesk_wake_sync(self):
        providers = {account.provider for account in self if account.sync_enabled}
        if not providers:
            return
        # sudo: any user who may read the account may ask for a sync; crons are admin records.
        self.env.ref("maildesk_mail_client.ir_cron_maildesk_bootstrap").sudo()._trigger()
        for provider in providers:
            self.env.ref(_INCREMENTAL_CRONS[provider]).sudo()._trigger()

    # ------------------------------------------------------------------
    # Crons
    # ------------------------------------------------------------------

    @api.model
    def _cron_maildesk_bootstrap(self):
        self._maildesk_run_accounts("due_for_bootstrap", bootstrap_account, PROVIDERS)

    @api.model
    def _cron_maildesk_imap_incremental(self):
        self._maildesk_run_accounts("due_for_sync", sync_account, ("imap",))

    @api.model
    def _cron_maildesk_gmail_incremental(self):
        self._maildesk_run_accounts("due_for_sync", sync_account, ("gmail",))

    @api.model
    def _cron_maildesk_outlook_delta(self):
        self._maildesk_run_accounts("due_for_sync", sync_account, ("outlook",))

    @api.model
    def _cron_maildesk_outlook_repair(self):
        """Rows a delta left thin (Graph sends some changes without their details), filled in batches."""
        self._maildesk_run_accounts("due_for_sync", repair_sparse, ("outlook",))

    @api.model
    def _maildesk_cron_budget(self):
        """Seconds one cron call may work.

        Odoo may chain up to 10 calls of a job that reports remaining work,
        for each of our crons, inside one worker loop, and a prefork cron
        worker's watchdog also counts its sleep (up to about 70 s) against
        ``limit_time_real_cron`` (else ``limit_time_real``, 120 s by
        default). 1/60 of the limit keeps all of that inside it: 2 s by
        default, thousands of messages per call. Without a limit, 60 s.
        """
        # As Odoo's PreforkServer reads them: limit_time_real_cron > 0 is the
        # limit, 0 means no limit, -1 (the default) means "use
        # limit_time_real", where 0 means no limit too.
        cron_limit = config.get("limit_time_real_cron")
        use_request_limit = cron_limit is None or cron_limit < 0
        limit = (config.get("limit_time_real") or 0) if use_request_limit else cron_limit
        return min(60.0, max(1.0, limit / 60)) if limit > 0 else 60.0

    @api.model
    def _cron_maildesk_backfill(self):
        ctx = engine_context(self.env)
        visited, indexed, pending = backfill(ctx, deadline=time.monotonic() + self._maildesk_cron_budget())
        _logger.info("MailDesk backfill: %d folder(s), %d message(s) indexed, %d folder(s) pending.",
                     visited, indexed, pending)
        self.env.invalidate_all()
        self.env["ir.cron"]._notify_progress(done=visited, remaining=pending)

    def _maildesk_run_accounts(self, selector, use_case, providers):
        ctx = engine_context(self.env)
        deadline = time.monotonic() + self._maildesk_cron_budget()
        repository = AccountRepository(self.env.cr)
        account_ids = [account_id for provider in providers for account_id in getattr(repository, selector)(provider)]
        done = remaining = 0
        for position, account_id in enumerate(account_ids):
            if time.monotonic() >= deadline:
                remaining += len(account_ids) - position
                break
            report = use_case(ctx, account_id, deadline)
            done += 1
            remaining += report.remaining if report else 0
        self.env.invalidate_all()
        self.env["ir.cron"]._notify_progress(done=done, remaining=remaining)
