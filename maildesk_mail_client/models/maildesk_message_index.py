from odoo import fields, models

from ..orm.int8 import Int8
from ..repositories.message_index import create_indexes


class MaildeskMessageIndex(models.Model):
    """The single source of truth for message metadata (DESIGN §2). No bodies.

    Rows are written by the engine in SQL (repositories/message_index.py);
    through the ORM they are read-only.
    """

    _name = "maildesk.message_index"
    _description = "Message Index"
    _order = "date desc, id desc"
    _rec_name = "subject"

    account_id = fields.Many2one("mailbox.account", required=True, ondelete="cascade", readonly=True)
    # Indexed by (folder_id, uid), see repositories/message_index.py::INDEXES.
    folder_id = fields.Many2one("maildesk.folder", required=True, ondelete="cascade", readonly=True)
    provider = fields.Selection(
        [("imap", "IMAP"), ("gmail", "Gmail"), ("outlook", "Outlook")], required=True, readonly=True)
    remote_id = fields.Char(string="Remote ID", required=True, readonly=True,
                            help="The provider's id of the message in its folder: the IMAP UID, the Gmail "
                                 "message id, the Graph immutable id.")
    uid = Int8(string="UID", readonly=True, help="IMAP only: the UID as a number, for range work.")
    delivery_key = fields.Char(required=True, readonly=True)

    message_id = fields.Char(string="Message-ID", readonly=True, index="btree_not_null")
    in_reply_to = fields.Char(string="In-Reply-To", readonly=True)
    references_header = fields.Text(string="References", readonly=True)
    thread_key = fields.Char(readonly=True, index=True)
    subject = fields.Char(readonly=True)
    from_address = fields.Char(string="From", readonly=True)
    to_addresses = fields.Text(string="To", readonly=True)
    cc_addresses = fields.Text(string="Cc", readonly=True)
    date = fields.Datetime(readonly=True)
    internal_date = fields.Datetime(readonly=True)
    size = fields.Integer(readonly=True)
    is_seen = fields.Boolean(string="Read", readonly=True)
    is_flagged = fields.Boolean(string="Flagged", readonly=True)
    is_answered = fields.Boolean(string="Answered", readonly=True)
    is_draft = fields.Boolean(string="Draft", readonly=True)
    has_attachments = fields.Boolean(readonly=True)
    snippet = fields.Char(readonly=True)
    modseq = Int8(string="MODSEQ", readonly=True)
    # Never NULL: the inbox's partial indexes and queries read live rows as NOT deleted_on_server.
    deleted_on_server = fields.Boolean(readonly=True, default=False)
    deleted_at = fields.Datetime(readonly=True)
    parse_error = fields.Text(
        readonly=True, help="Why the server's answer for this message could not be fully decoded.")
    needs_refetch = fields.Boolean(
        readonly=True, help="The server refused this message's details; sync asks again on its next passes.")
    fetch_attempts = fields.Integer(readonly=True, help="Times the server was asked again for this message.")

    _sql_constraints = [
        ("delivery_key_uniq", "unique(delivery_key)", "A message is indexed once per folder."),
    ]

    def init(self):
        # The same indexes the engine tests create: one list, in the repository.
        create_indexes(self.env.cr)
