from odoo import fields, models


class MaildeskAccountLease(models.Model):
    """Who works on an account right now, and until when (DESIGN §2).

    Written only by repositories/account_lease.py, in short transactions of
    their own; shown to admins to explain why an account is "busy".
    """

    _name = "maildesk.account_lease"
    _description = "Account Lease"
    _rec_name = "purpose"
    _order = "expires_at desc"

    account_id = fields.Many2one("mailbox.account", required=True, ondelete="cascade", readonly=True)
    purpose = fields.Char(required=True, readonly=True)
    holder = fields.Char(readonly=True, help="host:pid:run of the worker holding it.")
    acquired_at = fields.Datetime(readonly=True)
    expires_at = fields.Datetime(readonly=True)

    _sql_constraints = [
        ("account_purpose_uniq", "unique(account_id, purpose)", "One lease per account and purpose."),
    ]
