import logging
import time

from odoo import api, fields, models
from odoo.exceptions import ValidationError

from ..application.use_cases.ingest import import_pending, scan
from ..orm.ingest_context import ingest_ports
from ..repositories.ingest_queue import MAX_ATTEMPTS, create_indexes

_logger = logging.getLogger(__name__)


class MaildeskIngestQueue(models.Model):
    """The durable hand-off from the index into ``mail.thread`` (DESIGN §3, flow 4).

    Idempotent by Message-ID: one row per (account, Message-ID).
    """

    _name = "maildesk.ingest_queue"
    _description = "Ingest Queue"
    _order = "next_attempt_at, id"
    _rec_name = "message_id"

    account_id = fields.Many2one("mailbox.account", required=True, ondelete="cascade", readonly=True, index=True)
    # Indexed: deleting index rows (a purged folder) sets this to NULL, which must not scan the queue.
    index_id = fields.Many2one("maildesk.message_index", ondelete="set null", index="btree_not_null", readonly=True)
    message_id = fields.Char(string="Message-ID", required=True, readonly=True)
    state = fields.Selection(
        [("pending", "Pending"), ("done", "Done"), ("failed", "Failed")],
        default="pending", required=True, readonly=True, index=True,
    )
    attempts = fields.Integer(readonly=True)
    max_attempts = fields.Integer(default=MAX_ATTEMPTS, readonly=True)
    # NULL is due: rows made through the ORM are queued at once.
    next_attempt_at = fields.Datetime(readonly=True, index=True)
    last_error = fields.Text(readonly=True)
    mail_message_id = fields.Many2one("mail.message", ondelete="set null", readonly=True)
    # What the administrator needs to judge a failure without opening the index.
    subject = fields.Char(related="index_id.subject")
    from_address = fields.Char(related="index_id.from_address", string="From")
    mail_model = fields.Char(related="mail_message_id.model", string="Imported into")

    _sql_constraints = [
        ("message_uniq", "unique(account_id, message_id)", "A message is ingested once per account."),
    ]

    def init(self):
        create_indexes(self.env.cr)

    @api.model_create_multi
    def create(self, vals_list):
        # The account defaults to the index row's. A plain field, not a
        # related one: the row outlives its index row (ondelete set null).
        index_ids = {vals["index_id"] for vals in vals_list if vals.get("index_id") and not vals.get("account_id")}
        if index_ids:
            accounts = {index.id: index.account_id.id
                        for index in self.env["maildesk.message_index"].sudo().browse(index_ids)}
            vals_list = [{**vals, "account_id": accounts[vals["index_id"]]}
                         if vals.get("index_id") and not vals.get("account_id") else vals
                         for vals in vals_list]
        return super().create(vals_list)

    @api.constrains("account_id", "index_id")
    def _check_account_is_index_account(self):
        # The record rules filter on account_id: a row must not name another
        # account than its message's, or that account's readers would see it.
        for row in self.sudo():
            if row.index_id and row.account_id != row.index_id.account_id:
                raise ValidationError(self.env._(
                    "An ingest queue row belongs to its message's account (%s).",
                    row.index_id.account_id.display_name))

    # -- crons (DESIGN §4: every 3 min each) ----------------------------------------------

    def _maildesk_budget(self):
        return self.env["mailbox.account"]._maildesk_cron_budget()

    @api.model
    def _cron_maildesk_alias_scan(self):
        report = scan(ingest_ports(self.env), deadline=time.monotonic() + self._maildesk_budget())
        _logger.info("MailDesk alias scan: %d row(s) scanned, %d queued%s.", report.scanned, report.queued,
                     " (another worker is scanning)" if report.busy else
                     " (waiting for a long transaction to end)" if report.unsettled else "")
        self.env.invalidate_all()
        if report.queued:
            self.env.ref("maildesk_mail_client.ir_cron_maildesk_ingest_import")._trigger()
        self.env["ir.cron"]._notify_progress(done=report.scanned, remaining=int(report.remaining))

    @api.model
    def _cron_maildesk_ingest_import(self):
        report = import_pending(ingest_ports(self.env), deadline=time.monotonic() + self._maildesk_budget())
        _logger.info("MailDesk ingest: %d imported, %d already in Odoo, %d to retry, %d failed.",
                     report.imported, report.already, report.retried, report.failed)
        self.env.invalidate_all()
        self.env["ir.cron"]._notify_progress(done=report.handled, remaining=int(report.remaining))

    # -- the administrator's buttons -------------------------------------------------------

    def action_open_record(self):
        self.ensure_one()
        message = self.mail_message_id
        if not message.model or not message.res_id:
            return False
        return {"type": "ir.actions.act_window", "res_model": message.model, "res_id": message.res_id,
                "view_mode": "form", "views": [(False, "form")]}

    def action_requeue(self):
        """Failed rows back in the queue with all their attempts, imported at the next run (triggered now)."""
        self.check_access("write")  # administrators only: the view hides the button, RPC does not
        failed = self.filtered(lambda row: row.state == "failed")
        failed.write({"state": "pending", "attempts": 0, "next_attempt_at": fields.Datetime.now()})
        if failed:
            self.env.ref("maildesk_mail_client.ir_cron_maildesk_ingest_import")._trigger()
        return True

