"""One account on a real Dovecot, indexed by the real engine into a real PostgreSQL.

``SyncWorld`` is what the sync tests and the benchmark drive: it runs the
use cases and compares the index with what the server says, so every test
can end on the same assertion: the index equals the server, exactly.
"""

import time

from maildesk_mail_client.application.ports import SyncSettings
from maildesk_mail_client.application.use_cases import backfill, bootstrap_account, sync_account
from maildesk_mail_client.providers.imap.connection import ImapConfig
from maildesk_mail_client.providers.imap.mailbox import ImapMailbox
from maildesk_mail_client.providers.imap.session import ImapSessionAdapter

from .engine import create_account, make_context

FLAG_NAMES = (b"\\Seen", b"\\Flagged", b"\\Answered", b"\\Draft")


def imap_config(mailbox, timeout=30):
    return ImapConfig(host=mailbox.host, port=mailbox.port, security="none",
                      login=mailbox.login, password=mailbox.password, timeout=timeout)


def open_session(mailbox, timeout=5):
    """The production adapter, logged in to a test mailbox over plain IMAP."""
    return ImapSessionAdapter.open(imap_config(mailbox, timeout))


class SyncWorld:
    def __init__(self, connect, mailbox, settings=None, holder=None, account_id=None):
        self.connect = connect
        self.mailbox = mailbox
        self.conn = connect()
        self.account_id = account_id or create_account(self.conn, mailbox.login)
        self.ctx = make_context(self.conn, connect, self.open_mailbox, settings or SyncSettings(), holder)

    def open_mailbox(self, account_id):
        """The production adapter, as the Odoo side opens it."""
        assert account_id == self.account_id
        return ImapMailbox.open_account(imap_config(self.mailbox), self.ctx.settings.search_window)

    def sibling(self, holder):
        """Another worker on the same account: own connection, own lease holder."""
        return SyncWorld(self.connect, self.mailbox, self.ctx.settings, holder, self.account_id)

    # -- running the use cases ------------------------------------------------

    def deadline(self, seconds=120):
        return time.monotonic() + seconds

    def bootstrap_once(self):
        return bootstrap_account(self.ctx, self.account_id, self.deadline())

    def bootstrap_all(self, max_runs=50):
        for _ in range(max_runs):
            report = self.bootstrap_once()
            if report is not None and report.remaining == 0:
                return
        raise AssertionError("bootstrap did not finish")

    def sync(self):
        return sync_account(self.ctx, self.account_id, self.deadline())

    def backfill_all(self):
        return backfill(self.ctx, self.deadline())

    def full_sync(self):
        self.bootstrap_all()
        self.backfill_all()
        self.sync()

    # -- looking at the results -----------------------------------------------

    def folders(self):
        return {f.path: f for f in self.ctx.folders.list_for_account(self.account_id)}

    def index(self, path="INBOX"):
        """{uid: (seen, flagged, answered, draft)} of the live rows of a folder."""
        cr = self.conn.cursor()
        cr.execute(
            """
            SELECT i.uid, i.is_seen, i.is_flagged, i.is_answered, i.is_draft
              FROM maildesk_message_index i JOIN maildesk_folder f ON f.id = i.folder_id
             WHERE f.account_id = %s AND f.path = %s AND NOT i.deleted_on_server
            """,
            [self.account_id, path],
        )
        rows = cr.fetchall()
        self.conn.commit()
        return {uid: tuple(flags) for uid, *flags in rows}

    def rows(self, path="INBOX"):
        cr = self.conn.cursor()
        cr.execute(
            """
            SELECT i.* FROM maildesk_message_index i JOIN maildesk_folder f ON f.id = i.folder_id
             WHERE f.account_id = %s AND f.path = %s AND NOT i.deleted_on_server ORDER BY i.uid
            """,
            [self.account_id, path],
        )
        names = [column.name for column in cr.description]
        rows = [dict(zip(names, row, strict=True)) for row in cr.fetchall()]
        self.conn.commit()
        return rows

    def server(self, path="INBOX"):
        """{uid: (seen, flagged, answered, draft)} as Dovecot has it, read by a separate client."""
        client = self.mailbox.client()
        try:
            client.select_folder(path, readonly=True)
            uids = sorted(client.search("ALL"))
            data = {}
            for start in range(0, len(uids), 5000):  # a UID list per command stays short
                data.update(client.fetch(uids[start:start + 5000], ["FLAGS"]))
        finally:
            client.logout()
        return {uid: tuple(name in item[b"FLAGS"] for name in FLAG_NAMES) for uid, item in data.items()}

    def assert_index_matches_server(self, path="INBOX"):
        index, server = self.index(path), self.server(path)
        missing = sorted(set(server) - set(index))
        extra = sorted(set(index) - set(server))
        wrong = sorted(uid for uid in set(server) & set(index) if server[uid] != index[uid])
        assert not (missing or extra or wrong), (
            f"{path}: missing {missing[:10]}, extra {extra[:10]}, wrong flags {wrong[:10]}")
        cr = self.conn.cursor()
        cr.execute("SELECT count(*) - count(DISTINCT delivery_key) FROM maildesk_message_index")
        assert cr.fetchone()[0] == 0, "a delivery key is doubled"
        self.conn.commit()
        return len(index)


def query(world, sql, params=()):
    """Rows of ``sql`` on the world's connection, committed (no snapshot left open)."""
    cr = world.conn.cursor()
    cr.execute(sql, list(params))
    rows = cr.fetchall()
    world.conn.commit()
    return rows


def account_health(world):
    """(failure_count, last_error, auth_state) of the world's account."""
    return query(world, "SELECT failure_count, last_error, auth_state FROM mailbox_account WHERE id = %s",
                 [world.account_id])[0]


def folder_errors(world):
    """{path: last_error} of the world's folders."""
    return dict(query(world, "SELECT path, last_error FROM maildesk_folder WHERE account_id = %s",
                      [world.account_id]))
