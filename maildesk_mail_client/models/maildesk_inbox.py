"""The inbox's RPC: the folder tree, pages of the list, a thread (called by the client's orm service).

Thin: access is worked out here, through the ORM, as the calling user (the
accounts ``mailbox.account.search([])`` returns under their record rules);
the SQL is in ``repositories/inbox.py``, which applies those account ids to
every statement; the search box is parsed by ``application/search_query.py``.
"""

import datetime as dt

from odoo import api, fields, models
from odoo.exceptions import AccessError, UserError

from ..application.domain import FolderRole
from ..application.search_query import parse
from ..repositories.inbox import InboxRepository, Scope

#: ir.config_parameter: how many of a folder's first rows the prefetch hook is given
PREFETCH_TOP_N_PARAM = "maildesk.prefetch.folder_open_top_n"
PREFETCH_TOP_N_DEFAULT = 30
MAX_PAGE = 200


def _readable_account_ids(env):
    """The accounts the user may read: what the record rules let ``search`` return.

    Also flushes what the ORM still holds for the tables the repository reads in SQL.
    """
    env["maildesk.message_index"].check_access("read")
    for model in ("mailbox.account", "maildesk.folder", "maildesk.message_index"):
        env[model].flush_model()
    return env["mailbox.account"].search([]).ids


def _cursor(env, value):
    """A page cursor from the client: ``[date or null, id]`` as ``next_cursor`` gave it."""
    if value is None or value is False:
        return None
    try:
        date, index_id = value
        date = dt.datetime.fromisoformat(date) if date else None
        return (date.replace(tzinfo=None) if date else None, int(index_id))
    except (TypeError, ValueError) as error:
        raise UserError(env._("This page of the list is no longer valid; reload the list.")) from error


def _cursor_out(cursor):
    if cursor is None:
        return None
    date, index_id = cursor
    # Full precision: a cursor that lost microseconds would skip or repeat rows.
    return [date.isoformat(sep=" ") if date else None, index_id]


def _row_out(row):
    return {
        "id": row.id,
        "thread_key": row.thread_key,
        "thread_count": row.thread_count,
        "thread_unread": row.thread_unread,
        "account_id": row.account_id,
        "folder_id": row.folder_id,
        "subject": row.subject or "",
        "from_address": row.from_address or "",
        "to_addresses": row.to_addresses or "",
        "snippet": row.snippet or "",
        "date": fields.Datetime.to_string(row.date) if row.date else False,
        "is_seen": row.is_seen,
        "is_flagged": row.is_flagged,
        "has_attachments": row.has_attachments,
    }


class MaildeskMessageIndexInbox(models.Model):
    _inherit = "maildesk.message_index"

    def _maildesk_scope(self, scope, account_ids):
        """A :class:`Scope` from the client's dict; a folder or account the user may not read is refused."""
        scope = scope if isinstance(scope, dict) else {}
        repository = InboxRepository(self.env.cr)
        try:
            if scope.get("folder_id"):
                folder_id = int(scope["folder_id"])
                if repository.folder_account(folder_id) not in account_ids:
                    raise AccessError(self.env._("You cannot read this folder."))
                return Scope(Scope.FOLDER, folder_id)
            if scope.get("account_id"):
                account_id = int(scope["account_id"])
                if account_id not in account_ids:
                    raise AccessError(self.env._("You cannot read this mailbox."))
                return Scope(Scope.ACCOUNT, account_id)
        except (TypeError, ValueError) as error:
            raise UserError(self.env._("Unknown list: %s", scope)) from error
        if scope.get("all_inboxes"):
            return Scope(Scope.ALL_INBOXES)
        if scope.get("everywhere"):
            return Scope(Scope.EVERYWHERE)
        raise UserError(self.env._("Unknown list: %s", scope))

    def _maildesk_tz(self):
        return self.env.context.get("tz") or self.env.user.tz

    @api.model
    def maildesk_page(self, scope, query="", cursor=None, limit=50, threads=True):
        """One page of the inbox list, newest first.

        ``scope``: ``{"folder_id": id}``, ``{"account_id": id}``, ``{"all_inboxes": true}`` or
        ``{"everywhere": true}``; ``query``: the search box (application/search_query.py);
        ``cursor``: the ``next_cursor`` of the page before. Returns ``{rows, next_cursor}``;
        ``next_cursor`` is null on the last page. ``threads``: one row per conversation.
        """
        account_ids = _readable_account_ids(self.env)
        where = self._maildesk_scope(scope, account_ids)
        search = parse(query)
        try:
            limit = min(max(int(limit), 1), MAX_PAGE)
        except (TypeError, ValueError):
            limit = 50
        page = InboxRepository(self.env.cr).page(
            account_ids, where, query=search, cursor=_cursor(self.env, cursor), limit=limit, threads=bool(threads),
            tz=self._maildesk_tz())
        if where.kind == Scope.FOLDER and cursor is None and search.is_empty and page.rows:
            self._maildesk_folder_opened(page.rows[0].account_id, where.id, [row.id for row in page.rows])
        return {"rows": [_row_out(row) for row in page.rows], "next_cursor": _cursor_out(page.next_cursor)}

    def _maildesk_folder_opened(self, account_id, folder_id, index_ids):
        """The prefetch hook (DESIGN §3), with the first rows of the folder's first page."""
        try:
            top = int(self.env["ir.config_parameter"].sudo().get_param(PREFETCH_TOP_N_PARAM, PREFETCH_TOP_N_DEFAULT))
        except (TypeError, ValueError):
            top = PREFETCH_TOP_N_DEFAULT
        if top > 0:
            self.env["mailbox.account"]._maildesk_enqueue_folder_open_prefetch(account_id, folder_id, index_ids[:top])

    @api.model
    def maildesk_thread(self, index_id, scope=None, query=""):
        """The messages of ``index_id``'s conversation, oldest first, in the list's row shape.

        Without ``scope``: the conversation in the message's folder (what a folder's list
        counts); with the list's ``scope`` and ``query``: the very rows its ``thread_count`` counted.
        """
        message = self.browse(int(index_id)).exists()
        if not message:
            raise AccessError(self.env._("You cannot read this message."))
        message.check_access("read")
        account_ids = _readable_account_ids(self.env)
        where = self._maildesk_scope(scope, account_ids) if scope else None
        rows = InboxRepository(self.env.cr).thread(
            account_ids, message.id, scope=where, query=parse(query), tz=self._maildesk_tz())
        return [_row_out(row) for row in rows]


class MailboxAccountInbox(models.Model):
    _inherit = "mailbox.account"

    @api.model
    def maildesk_inbox_tree(self, folder_ids=None):
        """The folder tree: every account the user may read, its folders with unread and total counts.

        Folders come in tree order: each account's special folders first (INBOX at the top), each
        folder followed by its subfolders; ``depth`` is the folder's level under the account.

        ``folder_ids`` (a live refresh: the ``folder_ids`` of a ``maildesk/index_changed``
        notification): only these folders are counted; the others come with ``unread`` and
        ``total`` null (the client keeps what it has), and so does ``all_inboxes_unread``;
        ``partial`` is then true.
        """
        account_ids = _readable_account_ids(self.env)
        accounts = self.browse(account_ids)
        partial = folder_ids is not None and folder_ids is not False
        if partial:
            try:
                folder_ids = {int(folder) for folder in folder_ids}
            except (TypeError, ValueError) as error:
                raise UserError(self.env._("Unknown folders: %s", folder_ids)) from error
        counts = InboxRepository(self.env.cr).folder_counts(account_ids, folder_ids if partial else None)
        folders_by_account = {}
        for folder in self.env["maildesk.folder"].search([("account_id", "in", account_ids)]):
            folders_by_account.setdefault(folder.account_id.id, []).append(folder)
        tree = []
        all_inboxes_unread = 0
        for account in accounts:
            folders = []
            for folder in _tree_order(folders_by_account.get(account.id, [])):
                if partial and folder.id not in folder_ids:
                    unread = total = None
                else:
                    unread, total = counts.get(folder.id, (0, 0))
                if folder.role == "inbox" and not partial:
                    all_inboxes_unread += unread
                folders.append({
                    "id": folder.id, "name": folder.name or folder.path, "path": folder.path,
                    "role": folder.role, "depth": _depth(folder), "selectable": folder.selectable,
                    "unread": unread, "total": total,
                })
            tree.append({
                "id": account.id, "name": account.name, "email": account.email or "",
                "provider": account.provider, "sync_status": account.sync_status,
                "last_error": account.last_error or "", "folders": folders,
            })
        return {"accounts": tree, "all_inboxes_unread": None if partial else all_inboxes_unread,
                "partial": partial}


def _segments(folder):
    return folder.path.split(folder.delimiter) if folder.delimiter else [folder.path]


def _depth(folder):
    return len(_segments(folder)) - 1


def _tree_order(folders):
    """Each top-level folder by its role's rank (INBOX first), then its subfolders under it, by path."""
    rank = {tuple(_segments(f)): FolderRole.sequence(f.role) for f in folders}
    others = FolderRole.sequence(FolderRole.OTHER)

    def key(folder):
        segments = _segments(folder)
        return (rank.get(tuple(segments[:1]), others), [s.lower() for s in segments])

    return sorted(folders, key=key)
