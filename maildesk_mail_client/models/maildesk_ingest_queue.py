from odoo import api, fields, models
from odoo.exceptions import ValidationError


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
    max_attempts = fields.Integer(default=8, readonly=True)
    next_attempt_at = fields.Datetime(readonly=True, index=True)
    last_error = fields.Text(readonly=True)
    mail_message_id = fields.Many2one("mail.message", ondelete="set null", readonly=True)

    _sql_constraints = [
        ("message_uniq", "unique(account_id, message_id)", "A message is ingested once per account."),
    ]

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
