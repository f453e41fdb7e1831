from odoo import api, fields, models
from odoo.exceptions import ValidationError

from ..orm.read_context import max_total_bytes
from ..repositories.ui_cache import UiCacheRepository


class MaildeskUiCache(models.Model):
    """Rendered bodies and attachment lists, kept for a while (DESIGN §2).

    Filled on open under a PostgreSQL advisory lock so that concurrent opens
    of one message reach the provider once; emptied by a daily cron.
    """

    _name = "maildesk.ui_cache"
    _description = "Message Body Cache"
    _rec_name = "index_id"

    index_id = fields.Many2one("maildesk.message_index", required=True, ondelete="cascade", readonly=True)
    # The record rules filter on account_id, so it is always the index
    # row's, whatever the creator passes: else a body could be filed under
    # an account whose readers should not see it. Precomputed so that the
    # NOT NULL column is set on insert; create() ignores a value given.
    account_id = fields.Many2one("mailbox.account", related="index_id.account_id", store=True, precompute=True,
                                 required=True, ondelete="cascade", readonly=True, index=True)
    # Written by repositories/ui_cache.py only, already sanitized by
    # application/html_safety.py (nh3); see application/use_cases/read_message.py.
    headers_json = fields.Json(readonly=True)
    body_html = fields.Html(sanitize=True, readonly=True, groups="base.group_system")
    body_html_remote = fields.Html(sanitize=True, readonly=True, groups="base.group_system",
                                   help="The same with remote images, for a trusted sender or 'show once'.")
    remote_blocked = fields.Integer(readonly=True)
    body_text = fields.Text(readonly=True, groups="base.group_system")
    text_html = fields.Html(sanitize=True, readonly=True, groups="base.group_system")
    attachments_json = fields.Json(readonly=True)
    # The message as the server sent it (raw bytes, not base64 like other
    # Binary fields): parts and inline images are served from it.
    raw_message = fields.Binary(attachment=False, readonly=True, prefetch=False, groups="base.group_system")
    raw_size = fields.Integer(readonly=True)
    fetched_at = fields.Datetime(readonly=True)
    expires_at = fields.Datetime(readonly=True, index=True)

    _sql_constraints = [
        ("index_uniq", "unique(index_id)", "A message has one cache entry."),
    ]

    @api.model_create_multi
    def create(self, vals_list):
        # Dropped so that the precompute above sets it from index_id: a
        # precomputed field given a value keeps it.
        vals_list = [{key: value for key, value in vals.items() if key != "account_id"} for vals in vals_list]
        return super().create(vals_list)

    @api.constrains("account_id", "index_id")
    def _check_account_is_index_account(self):
        # A related field without inverse takes whatever write() is given:
        # refuse rather than let the rules read a wrong account.
        for cache in self.sudo():
            if cache.account_id != cache.index_id.account_id:
                raise ValidationError(self.env._(
                    "A cached body belongs to its message's account (%s).", cache.index_id.account_id.display_name))

    @api.model
    def _cron_maildesk_cache_cleanup(self):
        """Daily: drop expired entries, then the oldest ones over ``maildesk.cache_max_total_bytes``."""
        self.flush_model()
        self.env.cr.execute(
            "DELETE FROM maildesk_ui_cache WHERE expires_at < now() AT TIME ZONE 'UTC'")
        UiCacheRepository(self.env.cr).evict_over(max_total_bytes(self.env))
        self.env.invalidate_all()
