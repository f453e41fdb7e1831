"""One Gmail account on the local fake Gmail, indexed by the real engine into a real PostgreSQL.

``GmailSync`` is the Gmail twin of ``sync_world.SyncWorld``: it opens the
production ``GmailMailbox`` against ``GmailServer`` (real HTTP on loopback),
with an access token fetched from the fake's token endpoint by a real POST,
runs the use cases, and compares the index with the fake's state, worked
out here from the labels of each message (not with the adapter's mapper):

- a row per (folder, message) for every label that is a folder, plus All
  Mail ("ALL"); a message in TRASH (or SPAM) is in that folder only, as
  Gmail's label views leave Trash and Spam out;
- flags: seen = no UNREAD, flagged = STARRED, draft = DRAFT, never answered;
- folder paths are the label names.

Run as ``python -m tests.harness.gmail_engine '<json>'`` it is a sync worker
in a process of its own, so a test can kill it with SIGKILL (as
``harness/worker.py`` does for IMAP).
"""

from __future__ import annotations

import json
import os
import random
import sys
import time

import requests

from maildesk_mail_client.application.errors import AuthenticationFailed, ConnectionFailed
from maildesk_mail_client.application.ports import SyncSettings
from maildesk_mail_client.application.use_cases import backfill, bootstrap_account, sync_account
from maildesk_mail_client.providers.gmail import GmailConfig, GmailMailbox

from . import postgres
from .engine import create_account, make_context

CLIENT_ID = "maildesk-tests.apps.googleusercontent.com"
CLIENT_SECRET = "not-a-secret"
NOT_FOLDERS = {"UNREAD", "CHAT"}
SYSTEM_FOLDERS = {"INBOX", "SENT", "DRAFT", "TRASH", "SPAM", "STARRED", "IMPORTANT"}


class TokenSource:
    """``token(force_refresh)`` for GmailConfig: what Odoo's google.gmail.mixin does, over a real POST."""

    def __init__(self, token_url, refresh_token, email="user@example.com"):
        self.token_url, self.refresh_token, self.email = token_url, refresh_token, email
        self._access = None
        self.fetched = 0

    def __call__(self, force_refresh=False):
        if self._access is None or force_refresh:
            self._access = self._fetch()
        return self._access

    def _fetch(self):
        try:
            answer = requests.post(self.token_url, data={
                "grant_type": "refresh_token", "refresh_token": self.refresh_token,
                "client_id": CLIENT_ID, "client_secret": CLIENT_SECRET}, timeout=10)
        except requests.RequestException as error:
            raise ConnectionFailed(f"Google's token endpoint could not be reached: {error}") from error
        body = answer.json() if answer.headers.get("content-type", "").startswith("application/json") else {}
        if answer.status_code == 400 and body.get("error") == "invalid_grant":
            raise AuthenticationFailed(
                f"Google refused the refresh token of {self.email} (invalid_grant: it was revoked or expired): "
                "reconnect the account (MailDesk → Mailboxes → the account → Connect Gmail).")
        answer.raise_for_status()
        self.fetched += 1
        self.refresh_token = body.get("refresh_token") or self.refresh_token  # rotated
        return body["access_token"]


def gmail_config(url, tokens, **options):
    """Fast retries for tests: the backoff's shape is the production one, only shorter."""
    options = {"quota_per_minute": 10_000_000, "timeout": 5, "max_tries": 5, "backoff_base": 0.05,
               "backoff_cap": 0.5, **options}
    return GmailConfig("user@example.com", url, tokens, **options)


class GmailSync:
    def __init__(self, connect, url, refresh_token, settings=None, holder=None, account_id=None,
                 token_url=None, **config):
        self.connect = connect
        self.url = url
        self.tokens = TokenSource(token_url or url + "/token", refresh_token)
        self.config_options = config
        self.conn = connect()
        self.account_id = account_id or create_account(self.conn, "gmail", provider="gmail")
        self.ctx = make_context(self.conn, connect, self.open_mailbox, settings or SyncSettings(), holder)
        self.ctx.providers = ("gmail",)
        self.opened = []  # every adapter opened, for round-trip counts

    @classmethod
    def on(cls, connect, server, settings=None, **options):
        return cls(connect, server.url, server.world.refresh_token, settings, token_url=server.token_url, **options)

    def open_mailbox(self, account_id):
        """The production adapter, as the Odoo side opens it."""
        assert account_id == self.account_id
        mailbox = GmailMailbox(gmail_config(self.url, self.tokens, **self.config_options))
        self.opened.append(mailbox)
        return mailbox

    # -- running the use cases ------------------------------------------------

    def deadline(self, seconds=300):
        return time.monotonic() + seconds

    def bootstrap_once(self):
        return bootstrap_account(self.ctx, self.account_id, self.deadline())

    def bootstrap_all(self, max_runs=200):
        for _ in range(max_runs):
            report = self.bootstrap_once()
            if report is not None and report.remaining == 0:
                return
        raise AssertionError("bootstrap did not finish")

    def sync(self):
        return sync_account(self.ctx, self.account_id, self.deadline())

    def backfill_all(self):
        for _ in range(200):
            _visited, _indexed, pending = backfill(self.ctx, self.deadline())
            if not pending:
                return
        raise AssertionError("backfill did not finish")

    def full_sync(self):
        self.bootstrap_all()
        self.backfill_all()
        self.sync()

    # -- looking at the results -----------------------------------------------

    def query(self, sql, params=()):
        cr = self.conn.cursor()
        cr.execute(sql, list(params))
        rows = cr.fetchall() if cr.description else None
        self.conn.commit()
        return rows

    def folders(self):
        """{remote id: FolderState}"""
        return {f.remote_id: f for f in self.ctx.folders.list_for_account(self.account_id)}

    def index(self):
        """{(folder remote id, message id): (seen, flagged, answered, draft)} of the live rows."""
        rows = self.query("""SELECT f.remote_id, i.remote_id, i.is_seen, i.is_flagged, i.is_answered, i.is_draft
                               FROM maildesk_message_index i JOIN maildesk_folder f ON f.id = i.folder_id
                              WHERE i.account_id = %s AND NOT i.deleted_on_server""", [self.account_id])
        index = {}
        for folder, remote_id, *flags in rows:
            assert (folder, remote_id) not in index, f"{remote_id} has two live rows in {folder}"
            index[(folder, remote_id)] = tuple(flags)
        return index

    def account_state(self):
        return self.query("SELECT auth_state, failure_count, last_error FROM mailbox_account WHERE id = %s",
                          [self.account_id])[0]

    def history_id(self):
        return self.query("SELECT gmail_history_id FROM mailbox_account WHERE id = %s", [self.account_id])[0][0]

    def assert_matches(self, world, folders=None):
        """The index equals the fake Gmail: folders, rows per folder, flags. Returns the row count."""
        expected = expected_index(world)
        index = self.index()
        if folders is not None:
            expected = {key: value for key, value in expected.items() if key[0] in folders}
            index = {key: value for key, value in index.items() if key[0] in folders}
        missing = sorted(set(expected) - set(index))
        extra = sorted(set(index) - set(expected))
        wrong = sorted(key for key in set(index) & set(expected) if index[key] != expected[key])
        assert not (missing or extra or wrong), (
            f"missing {len(missing)} {missing[:5]}, extra {len(extra)} {extra[:5]}, "
            f"wrong flags {len(wrong)} {[(key, index[key], expected[key]) for key in wrong[:5]]}")
        if folders is None:
            assert {key: f.path for key, f in self.folders().items()} == expected_folders(world)
        doubled = self.query("SELECT count(*) - count(DISTINCT delivery_key) FROM maildesk_message_index")[0][0]
        assert doubled == 0, "a delivery key is doubled"
        return len(index)


def expected_folders(world):
    """{remote id: path}: the labels that are folders, and All Mail."""
    labels = world.list_labels()["labels"]
    found = {label["id"]: label["name"] for label in labels
             if label["type"] == "user" or label["id"] in SYSTEM_FOLDERS}
    found["ALL"] = "All Mail"
    return found


def expected_index(world):
    index = {}
    for message_id in world.message_ids():
        labels = world.labels_of(message_id)
        flags = ("UNREAD" not in labels, "STARRED" in labels, False, "DRAFT" in labels)
        # Gmail's views leave Trash and Spam out: such a message is in that folder only.
        hidden = labels & {"TRASH", "SPAM"}
        if hidden:
            folders = {"TRASH"} if "TRASH" in hidden else {"SPAM"}
        else:
            folders = {label for label in labels if label in SYSTEM_FOLDERS or label.startswith("Label_")} | {"ALL"}
        for folder in folders:
            index[(folder, message_id)] = flags
    return index


# ---------------------------------------------------------------------------
# a mailbox of mail
# ---------------------------------------------------------------------------

def raw_message(n, subject=None):
    return (f"From: Sender {n % 97} <s{n % 97}@example.org>\r\nTo: user@example.com\r\n"
            f"Subject: {subject or f'Message {n}'}\r\nMessage-ID: <m{n}@example.org>\r\n"
            f"Date: Mon, 1 Jan 2024 10:00:00 +0000\r\nContent-Type: text/plain\r\n\r\nBody of {n}\r\n").encode()


def seed(world, count, labels=(), *, rng=None, start=0, base_ms=1_600_000_000_000):
    """``count`` messages, oldest first, each in INBOX or archived, with 0-3 of ``labels``, some unread,
    starred, important, sent, spam or trashed. Returns their ids."""
    rng = rng or random.Random(start)
    ids = []
    for n in range(start, start + count):
        chosen = set(rng.sample(list(labels), min(len(labels), rng.choice((0, 1, 1, 2, 3))))) if labels else set()
        roll = rng.random()
        if roll < 0.5:
            chosen.add("INBOX")
        elif roll < 0.6:
            chosen.add("SENT")
        elif roll < 0.63:
            chosen.add("SPAM")
        elif roll < 0.66:
            chosen.add("TRASH")
        elif roll < 0.67:
            chosen.add("DRAFT")
        if rng.random() < 0.4:
            chosen.add("UNREAD")
        if rng.random() < 0.1:
            chosen.add("STARRED")
        if rng.random() < 0.2:
            chosen.add("IMPORTANT")
        if rng.random() < 0.2 and "INBOX" in chosen:
            chosen.add("CATEGORY_UPDATES")
        ids.append(world.add_message(raw_message(n), tuple(chosen), internal_date=base_ms + n * 60_000))
    return ids


# ---------------------------------------------------------------------------
# a worker process a test can kill
# ---------------------------------------------------------------------------

class SlowHooks:
    """Writes what it is told into ``table`` inside the engine's transaction, then sleeps per row."""

    def __init__(self, delay, cr=None, table=None, who=None):
        self.delay, self.cr, self.table, self.who = delay, cr, table, who
        self.calls = []

    def after_upsert(self, account_id, folder_id, rows):
        if self.table:
            self.cr.executemany(
                f"INSERT INTO {self.table} (who, account_id, folder_id, remote_id, index_id, is_new) "
                "VALUES (%s, %s, %s, %s, %s, %s)",
                [(self.who, account_id, folder_id, row.remote_id, row.index_id, row.is_new) for row in rows])
        for row in rows:
            self.calls.append((account_id, folder_id, row.remote_id, row.index_id, row.is_new))
            time.sleep(self.delay)


def main(raw):
    spec = json.loads(raw)
    server, dbname = spec["pg"], spec["dbname"]
    sync = GmailSync(lambda: postgres.connect(server, dbname), spec["url"], spec["refresh_token"],
                     SyncSettings(**spec["settings"]), account_id=spec["account_id"], **spec.get("config", {}))
    sync.ctx.hooks = SlowHooks(spec["delay"], sync.conn.cursor(), spec.get("hook_table"), f"worker-{os.getpid()}")
    mode = spec.get("mode", "bootstrap")
    if mode == "bootstrap":
        sync.bootstrap_all()
        sync.backfill_all()
    elif mode == "sync":
        sync.sync()
    else:
        raise ValueError(f"unknown worker mode {mode!r}")
    print("worker finished", flush=True)


if __name__ == "__main__":
    main(sys.argv[1])
