from odoo import api, fields, models
from odoo.exceptions import AccessError


class MaildeskSignature(models.Model):
    """A user's signature for one account, appended by the composer. Own rows only."""

    _name = "maildesk.signature"
    _description = "Mail Signature"
    _rec_name = "account_id"

    user_id = fields.Many2one("res.users", required=True, default=lambda self: self.env.user, ondelete="cascade",
                              index=True, readonly=True)
    account_id = fields.Many2one("mailbox.account", required=True, ondelete="cascade")
    body_html = fields.Html(string="Signature", sanitize_style=True)

    _sql_constraints = [
        ("user_account_uniq", "unique(user_id, account_id)", "You already have a signature for this account."),
    ]

    @api.model_create_multi
    def create(self, vals_list):
        for vals in vals_list:
            if not self.env.su and vals.get("user_id", self.env.uid) != self.env.uid:
                raise AccessError(self.env._("A signature belongs to the user who writes it."))
            self.env["mailbox.account"].browse(vals.get("account_id")).check_access("read")
        return super().create(vals_list)

    def write(self, vals):
        if "user_id" in vals and not self.env.su:
            raise AccessError(self.env._("A signature belongs to the user who wrote it."))
        return super().write(vals)

    @api.model
    def _maildesk_for(self, account):
        """The current user's signature HTML for ``account``, or ""."""
        row = self.search([("user_id", "=", self.env.uid), ("account_id", "=", account.id)], limit=1)
        return row.body_html or ""

    @api.model
    def maildesk_get_signature(self, account_id):
        account = self.env["mailbox.account"].browse(int(account_id))
        account.check_access("read")
        return {"account_id": account.id, "body_html": self._maildesk_for(account)}

    @api.model
    def maildesk_set_signature(self, account_id, body_html):
        account = self.env["mailbox.account"].browse(int(account_id))
        account.check_access("read")
        row = self.search([("user_id", "=", self.env.uid), ("account_id", "=", account.id)], limit=1)
        if row:
            row.body_html = body_html or False
        else:
            row = self.create({"account_id": account.id, "body_html": body_html or False})
        return {"id": row.id, "account_id": account.id, "body_html": row.body_html or ""}
