from odoo import fields, models

from ..application.domain import BackfillState, FolderRole, FolderSyncState
from ..orm.int8 import Int8


class MaildeskFolder(models.Model):
    _name = "maildesk.folder"
    _description = "Mailbox Folder"
    _order = "account_id, role_sequence, path"
    _rec_name = "path"

    account_id = fields.Many2one("mailbox.account", required=True, ondelete="cascade", index=True)
    path = fields.Char(required=True, readonly=True, help="Full name on the server.")
    remote_id = fields.Char(string="Remote ID", readonly=True,
                            help="What identifies the folder across renames: the IMAP MAILBOXID (or the path "
                                 "when the server has none), the Gmail label id, the Graph folder id.")
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
    sync_cursor = fields.Char(readonly=True, copy=False, help="A provider's change cursor (Graph deltaLink).")
    backfill_cursor = fields.Char(readonly=True, copy=False,
                                  help="A provider's cursor going back in history (page token, nextLink).")
    reconcile_cursor = fields.Char(readonly=True, copy=False,
                                   help="Where the running full reconciliation resumes; empty when none runs.")
    reconciled_at = fields.Datetime(readonly=True, help="When the index last equalled the server, checked in full.")
    missing_runs = fields.Integer(readonly=True, help="Folder listings in a row that did not show this folder.")
    sync_state = fields.Selection(list(FolderSyncState.SELECTION), default=FolderSyncState.NEW,
                                  required=True, readonly=True)
    backfill_state = fields.Selection(list(BackfillState.SELECTION), default=BackfillState.PENDING,
                                      required=True, readonly=True)
    bootstrap_indexed = fields.Integer(readonly=True)
    last_sync_at = fields.Datetime(string="Last Sync", readonly=True)
    last_error = fields.Text(readonly=True, help="What the server refused for this folder on the last visit.")
    warning = fields.Text(readonly=True, help="The last thing sync could not do for one message of this folder "
                                              "(an add-on that failed on it, a value the database refused).")
    warning_at = fields.Datetime(readonly=True)

    _sql_constraints = [
        ("account_path_uniq", "unique(account_id, path)", "A folder path is unique per account."),
    ]
