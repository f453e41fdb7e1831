from odoo import fields, models


class MaildeskIngestQueue(models.Model):
    """The durable hand-off from the index into ``mail.thread`` (DESIGN §3, flow 4).

    Idempotent by Message-ID: one row per (account, Message-ID).
    """

    _name = "maildesk.ingest_queue"
    _description = "Ingest Queue"
    _order = "next_attempt_at, id"
    _rec_name = "message_id"

    account_id = fields.Many2one("mailbox.account", required=True, ondelete="cascade", readonly=True, index=True)
    index_id = fields.Many2one("maildesk.message_index", ondelete="set null", readonly=True)
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
