"""One Outlook account on the local Graph, indexed by the real engine into a real PostgreSQL.

``OutlookWorld`` runs the use cases with the production adapter
(``providers/outlook``) over real sockets and TLS, and compares the index
with the fake's state: folders (ids and paths), message ids per folder,
flags. The refresh token lives in a table of the test database and the
adapter's ``save_refresh_token`` writes it there in a transaction of its
own, committed at once, as Odoo does (``orm/mailboxes.py``).

Run as a module it is a killable worker (``python -m tests.harness.outlook_world '<json>'``),
as ``harness/worker.py`` is for IMAP.
"""

import json
import os
import sys
import time

from maildesk_mail_client.application.ports import SyncSettings
from maildesk_mail_client.application.use_cases import backfill, bootstrap_account, sync_account
from maildesk_mail_client.providers.outlook import OutlookConfig, OutlookMailbox

from . import postgres
from .engine import create_account, make_context

TOKEN_TABLE = "outlook_test_token"


def graph_spec(server):
    """What a worker process needs to reach the local Graph (never a token: those are in the database)."""
    world = server.world
    return {"url": server.url, "authority": server.authority, "ca_file": server.ca_file,
            "client_id": world.client_id, "client_secret": world.client_secret, "email": world.user_email}


class OutlookWorld:
    def __init__(self, connect, graph, settings=None, holder=None, account_id=None, refresh_token=None,
                 timeout=10.0, backoff_base=0.05, max_tries=6, keep_access_token=False):
        """``graph``: a GraphServer, or its ``graph_spec`` (in a worker process)."""
        self.connect = connect
        self.graph = graph if isinstance(graph, dict) else graph_spec(graph)
        self.server = None if isinstance(graph, dict) else graph
        self.conn = connect()
        self.options = {"timeout": timeout, "backoff_base": backoff_base, "max_tries": max_tries}
        self._ensure_token_table()
        self.account_id = account_id or create_account(self.conn, self.graph["email"], provider="outlook")
        if refresh_token is not None:
            self.save_token(refresh_token)
        self.ctx = make_context(self.conn, connect, self.open_mailbox, settings or SyncSettings(), holder)
        self.ctx.providers = ("outlook",)
        self.opened = []  # every mailbox this world opened, for tests that look at their counters
        self.keep_access_token = keep_access_token
        self.kept_access = (None, 0.0)  # (token, expiry epoch), as Odoo keeps it on the account

    # -- the refresh token, stored apart from the sync --------------------------

    def _ensure_token_table(self):
        with self.conn.cursor() as cr:
            cr.execute(f"CREATE TABLE IF NOT EXISTS {TOKEN_TABLE} "
                       "(account_id int4 PRIMARY KEY, refresh_token text, saved int4 DEFAULT 0)")
        self.conn.commit()

    def save_token(self, token):
        """The production callback's twin of Odoo's ``store_tokens``: its own transaction, committed now."""
        conn = self.connect()
        try:
            with conn.cursor() as cr:
                cr.execute(f"""INSERT INTO {TOKEN_TABLE} (account_id, refresh_token, saved) VALUES (%s, %s, 1)
                               ON CONFLICT (account_id) DO UPDATE
                               SET refresh_token = EXCLUDED.refresh_token, saved = {TOKEN_TABLE}.saved + 1""",
                           [self.account_id, token])
            conn.commit()
        finally:
            conn.close()

    def load_token(self):
        """The production callback's twin of Odoo's ``saved_token``: a connection of its own, never the run's."""
        conn = self.connect()
        try:
            with conn.cursor() as cr:
                cr.execute(f"SELECT refresh_token FROM {TOKEN_TABLE} WHERE account_id = %s", [self.account_id])
                row = cr.fetchone()
            conn.rollback()
            return row[0] if row else None
        finally:
            conn.close()

    def stored_token(self):
        rows = query(self, f"SELECT refresh_token, saved FROM {TOKEN_TABLE} WHERE account_id = %s",
                     [self.account_id])
        return rows[0] if rows else (None, 0)

    def config(self, **changes):
        spec = self.graph
        values = {"email": spec["email"], "graph_url": spec["url"], "authority": spec["authority"],
                  "client_id": spec["client_id"], "client_secret": spec["client_secret"],
                  "refresh_token": self.stored_token()[0] or "", "save_refresh_token": self.save_token,
                  "load_refresh_token": self.load_token,
                  "ca_file": spec["ca_file"], **self.options, **changes}
        if self.keep_access_token:
            values.update(access_token=self.kept_access[0], access_token_expires=self.kept_access[1],
                          save_access_token=lambda token, expires: setattr(self, "kept_access", (token, expires)))
        return OutlookConfig(**values)

    def open_mailbox(self, account_id):
        """The production adapter, as the Odoo side opens it."""
        assert account_id == self.account_id
        mailbox = OutlookMailbox(self.config())
        self.opened.append(mailbox)
        return mailbox

    def sibling(self, holder):
        return OutlookWorld(self.connect, self.graph, self.ctx.settings, holder, self.account_id, **self.options)

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
        """{remote id: FolderState} of the account."""
        return {f.remote_id: f for f in self.ctx.folders.list_for_account(self.account_id)}

    def index(self):
        """{remote id: (folder remote id, seen, flagged, draft)} of the account's live rows."""
        rows = query(self, """SELECT i.remote_id, f.remote_id, i.is_seen, i.is_flagged, i.is_draft
                                FROM maildesk_message_index i JOIN maildesk_folder f ON f.id = i.folder_id
                               WHERE i.account_id = %s AND NOT i.deleted_on_server""", [self.account_id])
        found = {}
        for remote_id, folder, *flags in rows:
            assert remote_id not in found, f"message {remote_id[-12:]} is live in two folders"
            found[remote_id] = (folder, *flags)
        return found

    def row_ids(self):
        """{remote id: index row id} of every row of the account, live or not."""
        return dict(query(self, "SELECT remote_id, id FROM maildesk_message_index WHERE account_id = %s",
                          [self.account_id]))

    def server_folders(self):
        """{folder id: path} as the fake has them (display names joined by '/', hidden ones left out)."""
        world = self.server.world
        found, level = {}, [(None, None)]
        while level:
            following = []
            for parent_id, parent_path in level:
                children, _more = world.list_folders(parent_id, hidden=False, skip=0, top=10**6)
                for child in children:
                    path = f"{parent_path}/{child['displayName']}" if parent_path else child["displayName"]
                    found[child["id"]] = path
                    following.append((child["id"], path))
            level = following
        return found

    def server_messages(self):
        """{message id: (folder id, seen, flagged, draft)} as the fake has them."""
        world = self.server.world
        found = {}
        for msg_id in world.message_ids():
            item = world.message_json(msg_id, ["isRead", "flag", "isDraft", "parentFolderId"])
            found[msg_id] = (item["parentFolderId"], item["isRead"], item["flag"]["flagStatus"] == "flagged",
                             item["isDraft"])
        return found

    def assert_index_matches_server(self):
        """Folders (ids and paths), message ids per folder and flags: equal. Returns the message count."""
        local = {remote_id: folder.path for remote_id, folder in self.folders().items()}
        remote = self.server_folders()
        assert local == remote, f"folders differ: index-only {sorted(set(local.items()) - set(remote.items()))[:5]}, " \
                                f"server-only {sorted(set(remote.items()) - set(local.items()))[:5]}"
        index, server = self.index(), self.server_messages()
        missing = sorted(set(server) - set(index))
        extra = sorted(set(index) - set(server))
        wrong = sorted(key for key in set(server) & set(index) if server[key] != index[key])
        assert not (missing or extra or wrong), (
            f"missing {len(missing)} {[m[-12:] for m in missing[:5]]}, extra {len(extra)} "
            f"{[m[-12:] for m in extra[:5]]}, wrong folder/flags {len(wrong)} "
            f"{[(server[m], index[m]) for m in wrong[:3]]}")
        doubled = query(self, """SELECT remote_id, count(*) FROM maildesk_message_index WHERE account_id = %s
                                  GROUP BY remote_id HAVING count(*) > 1""", [self.account_id])
        assert not doubled, f"a message has several rows: {doubled[:5]}"
        return len(index)


def query(world, sql, params=()):
    cr = world.conn.cursor()
    cr.execute(sql, list(params))
    rows = cr.fetchall() if cr.description else None
    world.conn.commit()
    return rows


# ---------------------------------------------------------------------------
# a killable worker
# ---------------------------------------------------------------------------


def main(raw):
    """``spec``: pg, dbname, account_id, graph (graph_spec), settings, delay, hook_table, mode
    (bootstrap: to the end then backfill; sync; backfill; token: one sync, then sleep, to be killed)."""
    from .worker import SlowHooks

    spec = json.loads(raw)
    world = OutlookWorld(lambda: postgres.connect(spec["pg"], spec["dbname"]), spec["graph"],
                         SyncSettings(**spec["settings"]), holder=spec.get("holder"), account_id=spec["account_id"],
                         **spec.get("options", {}))
    world.ctx.hooks = SlowHooks(spec.get("delay", 0), world.conn.cursor(), spec.get("hook_table"),
                                f"worker-{os.getpid()}")
    mode = spec.get("mode", "bootstrap")
    if mode == "bootstrap":
        world.bootstrap_all()
        world.backfill_all()
    elif mode == "sync":
        world.sync()
    elif mode == "backfill":
        world.backfill_all()
    elif mode == "refresh":
        # Sign in (the refresh rotates the token), say so, and wait to be killed.
        mailbox = world.open_mailbox(world.account_id)
        _ = mailbox.identity
        print("refreshed", flush=True)
        time.sleep(600)
    else:
        raise ValueError(f"unknown worker mode {mode!r}")
    print("worker finished", flush=True)


if __name__ == "__main__":
    main(sys.argv[1])
