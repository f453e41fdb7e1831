from odoo import api, fields, models, tools
from odoo.exceptions import AccessError


class MaildeskTrustedSender(models.Model):
    """A sender whose remote content (images, CSS images) a user lets load without asking.

    One row per user and address; the record rules give each user their own
    rows only, administrators included.
    """

    _name = "maildesk.trusted_sender"
    _description = "Trusted Sender"
    _rec_name = "email"
    _order = "email"

    user_id = fields.Many2one("res.users", required=True, default=lambda self: self.env.user, ondelete="cascade",
                              index=True, readonly=True)
    email = fields.Char(required=True)

    _sql_constraints = [
        ("user_email_uniq", "unique(user_id, email)", "This sender is already trusted."),
    ]

    @api.model
    def _maildesk_normalize(self, address):
        """The comparable form of an address ("Name <A@B.c>" -> "a@b.c"), or False."""
        return tools.email_normalize(address or "") or False

    @api.model_create_multi
    def create(self, vals_list):
        for vals in vals_list:
            if vals.get("email"):
                vals["email"] = self._maildesk_normalize(vals["email"]) or vals["email"].strip().lower()
        return super().create(vals_list)

    def write(self, vals):
        # Odoo checks record rules before a write, not after: moving a row to another
        # user would plant trust in their reading pane.
        if "user_id" in vals and not self.env.su:
            raise AccessError(self.env._("A trusted sender belongs to the user who trusted it."))
        if vals.get("email"):
            vals["email"] = self._maildesk_normalize(vals["email"]) or vals["email"].strip().lower()
        return super().write(vals)

    @api.model
    def _maildesk_is_trusted(self, address):
        """Does the current user trust this sender? (Searched as the user: the rules apply.)"""
        email = self._maildesk_normalize(address)
        return bool(email) and bool(self.search_count([("user_id", "=", self.env.uid), ("email", "=", email)],
                                                      limit=1))

    @api.model
    def _maildesk_trust(self, address):
        """Trust this sender for the current user; returns the normalized address."""
        email = self._maildesk_normalize(address)
        if email and not self._maildesk_is_trusted(email):
            self.create({"email": email, "user_id": self.env.uid})
        return email
