from odoo import fields, models


class MaildeskFolderSeen(models.Model):
    """The ids a full delta round of a folder has listed so far (repositories/folder_seen.py).

    A round can span many cron runs; what the index holds and the round
    never listed is gone from the server. Kept in the database, committed
    with each page, so a killed run neither forgets a listed id nor keeps
    one it did not commit. Engine bookkeeping only: no menu, no user access.
    """

    _name = "maildesk.folder.seen"
    _description = "Folder Ids Listed by a Running Full Sync Round"
    _log_access = False

    folder_id = fields.Many2one("maildesk.folder", required=True, ondelete="cascade")
    remote_id = fields.Char(required=True)

    _sql_constraints = [
        ("folder_remote_uniq", "unique(folder_id, remote_id)", "An id is listed once per folder and round."),
    ]
