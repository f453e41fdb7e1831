from odoo import fields, models

from ..application.domain import FolderRole
from ..orm.int8 import Int8


class MaildeskFolder(models.Model):
    _name = "maildesk.folder"
    _description = "Mailbox Folder"
    _order = "account_id, role_sequence, path"
    _rec_name = "path"

    account_id = fields.Many2one("mailbox.account", required=True, ondelete="cascade", index=True)
    path = fields.Char(required=True, readonly=True, help="Full name on the server.")
    name = fields.Char(readonly=True, help="Last segment of the path.")
    delimiter = fields.Char(readonly=True)
    role = fields.Selection([(role, role.title()) for role in FolderRole.ALL_ROLES],
                            default=FolderRole.OTHER, required=True, readonly=True)
    role_sequence = fields.Integer(readonly=True, help="Written with the role by the engine: INBOX sorts first.")
    selectable = fields.Boolean(default=True, readonly=True)

    # Cursors (DESIGN §2): 32/63-bit values, hence int8.
    uidvalidity = Int8(string="UIDVALIDITY", readonly=True)
    uidnext = Int8(string="UIDNEXT", readonly=True)
    highest_modseq = Int8(string="HIGHESTMODSEQ", readonly=True)
    last_uid = Int8(string="Last UID", readonly=True, help="Highest UID covered by sync.")
    low_uid = Int8(string="Lowest Indexed UID", readonly=True,
                   help="Bootstrap and backfill have indexed everything from here up.")
    server_exists = Int8(string="Messages on Server", readonly=True)
    graph_delta_link = fields.Char(readonly=True, copy=False)
    sync_state = fields.Selection(
        [("new", "New"), ("bootstrap", "Loading newest"), ("incremental", "Incremental")],
        default="new", required=True, readonly=True,
    )
    backfill_state = fields.Selection([("pending", "Pending"), ("done", "Done")],
                                      default="pending", required=True, readonly=True)
    bootstrap_indexed = fields.Integer(readonly=True)
    last_sync_at = fields.Datetime(string="Last Sync", readonly=True)
    last_error = fields.Text(readonly=True, help="What the server refused for this folder on the last visit.")

    _sql_constraints = [
        ("account_path_uniq", "unique(account_id, path)", "A folder path is unique per account."),
    ]
