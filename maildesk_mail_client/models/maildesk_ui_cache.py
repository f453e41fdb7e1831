from odoo import api, fields, models


class MaildeskUiCache(models.Model):
    """Rendered bodies and attachment lists, kept for a while (DESIGN §2).

    Filled on open under a PostgreSQL advisory lock so that concurrent opens
    of one message reach the provider once; emptied by a daily cron.
    """

    _name = "maildesk.ui_cache"
    _description = "Message Body Cache"
    _rec_name = "index_id"

    index_id = fields.Many2one("maildesk.message_index", required=True, ondelete="cascade", readonly=True)
    account_id = fields.Many2one("mailbox.account", required=True, ondelete="cascade", readonly=True, index=True)
    body_html = fields.Html(sanitize=True, readonly=True)
    attachments_json = fields.Json(readonly=True)
    fetched_at = fields.Datetime(readonly=True)
    expires_at = fields.Datetime(readonly=True, index=True)

    _sql_constraints = [
        ("index_uniq", "unique(index_id)", "A message has one cache entry."),
    ]

    @api.model
    def _cron_maildesk_cache_cleanup(self):
        """Daily: drop expired entries."""
        self.env.cr.execute(
            "DELETE FROM maildesk_ui_cache WHERE expires_at < now() AT TIME ZONE 'UTC'")
