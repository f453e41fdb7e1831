"""The sender for Gmail and Outlook accounts, against the local Gmail and Graph, with a real PostgreSQL.

``OAuthSendWorld`` connects one account with the real sync first (so its
folders are the ones discovery makes: SENT / All Mail labels, Sent Items
with its Graph id), then queues rows as ``maildesk_send`` leaves them and
runs the production use case with the production transports
(``providers/gmail/transport.py``, ``providers/outlook/transport.py``).
The truth is read from the fake server: how many times each Message-ID
was sent.

Run as ``python -m tests.harness.send_oauth '<json>'`` it is a sender in a
process of its own that SIGKILLs itself at a named step (see ``main``).
"""

from __future__ import annotations

import collections
import email
import json
import os
import signal
import sys
import time

from maildesk_mail_client.application import outgoing_mime
from maildesk_mail_client.application.sending import SendSettings
from maildesk_mail_client.application.use_cases.send_outbox import send_account, send_due
from maildesk_mail_client.providers.gmail.transport import GmailTransport
from maildesk_mail_client.providers.outlook.transport import OutlookTransport

from . import postgres
from .gmail_engine import GmailSync, gmail_config
from .outlook_world import OutlookWorld, graph_spec
from .send_world import make_ports, utcnow

USER = "user@example.com"


def queue(conn, account_id, count=1, to="bob@example.net", cc="", bcc="", subject="Hello", attachment=None):
    """Rows as maildesk_send leaves them: final MIME, fixed Message-ID, queued now."""
    cr = conn.cursor()
    ids = []
    for number in range(count):
        message_id = outgoing_mime.new_message_id(USER)
        attachments = [outgoing_mime.Attachment("big.bin", "application/octet-stream", attachment)] \
            if attachment else []
        mime = outgoing_mime.build(outgoing_mime.Outgoing(
            from_name="Test User", from_email=USER, message_id=message_id, subject=f"{subject} {number}", to=to,
            cc=cc, bcc=bcc, text=f"Message {number}\n", html=f"<p>Message {number}</p>", attachments=attachments))
        cr.execute(
            """INSERT INTO maildesk_outbox (account_id, state, message_id, subject, email_to, email_cc, email_bcc,
                                            mime, mime_size, send_after, attempts, max_attempts, create_date,
                                            write_date)
               VALUES (%s, 'queued', %s, %s, %s, %s, %s, %s, %s, %s, 0, 5, now(), now()) RETURNING id""",
            [account_id, message_id, f"{subject} {number}", to, cc, bcc, mime, len(mime), utcnow()])
        ids.append(cr.fetchone()[0])
    conn.commit()
    return ids


class OAuthSendWorld:
    """``kind``: "gmail" (server: GmailServer) or "outlook" (server: GraphServer)."""

    def __init__(self, kind, connect, server, settings, *, timeout=5.0, sync=True):
        self.kind = kind
        self.connect = connect
        self.server = server
        self.settings = settings
        self.timeout = timeout
        if kind == "gmail":
            self.sync_world = GmailSync.on(connect, server, timeout=timeout)
        else:
            self.sync_world = OutlookWorld(connect, server, refresh_token=server.world.refresh_token,
                                           timeout=timeout)
        self.conn = self.sync_world.conn
        self.account_id = self.sync_world.account_id
        cr = self.conn.cursor()
        cr.execute("UPDATE mailbox_account SET email = %s WHERE id = %s", [USER, self.account_id])
        self.conn.commit()
        if sync:
            self.sync_world.full_sync()
        self.ports = make_ports(self.conn, connect, self.transport, settings)
        self.ports.providers = (kind,)
        self.transports = []

    def transport(self, account_id):
        assert account_id == self.account_id
        if self.kind == "gmail":
            transport = GmailTransport(gmail_config(self.server.url, self.sync_world.tokens, timeout=self.timeout))
        else:
            transport = OutlookTransport(self.sync_world.config())
        self.transports.append(transport)
        return transport

    def queue(self, count=1, **options):
        return queue(self.conn, self.account_id, count, **options)

    def send(self, seconds=60):
        return send_account(self.ports, self.account_id, time.monotonic() + seconds)

    def settle(self, timeout=30.0):
        """Run the sender until no row is queued or sending (backoffs and the proof's wait included)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for _round in range(50):
                done, left = send_due(self.ports, time.monotonic() + 60)
                if not done and not left:
                    break
            if not any(row["state"] in ("queued", "sending") for row in self.rows()):
                return
            time.sleep(0.1)
        raise AssertionError(f"rows still waiting: {[(r['state'], r['last_error']) for r in self.rows()]}")

    def sync(self):
        return self.sync_world.sync()

    def retry(self, row_id):
        """What the row's Retry button does (models/maildesk_outbox.py action_retry)."""
        cr = self.conn.cursor()
        cr.execute("""UPDATE maildesk_outbox SET state = 'queued', send_after = %s, next_attempt_at = NULL,
                             attempts = 0, failure_kind = NULL, last_error = NULL WHERE id = %s AND state = 'failed'""",
                   [utcnow(), row_id])
        self.conn.commit()

    # -- the truth ------------------------------------------------------------------

    def sent_counts(self):
        """{Message-ID: times sent} as the fake server recorded the sends."""
        world = self.server.world
        if self.kind == "outlook":
            return world.sent_internet_ids()
        counts = collections.Counter()
        for gmail_id in world.message_ids("SENT"):
            counts[str(email.message_from_bytes(world.raw_of(gmail_id))["Message-ID"]).strip()] += 1
        return counts

    def sent_raw(self, message_id):
        world = self.server.world
        if self.kind == "outlook":
            found = world.find_internet_id(message_id)
            return world.message_mime(found[0]) if found else None
        for gmail_id in world.message_ids("SENT"):
            raw = world.raw_of(gmail_id)
            if str(email.message_from_bytes(raw)["Message-ID"]).strip() == message_id:
                return raw
        return None

    def drafts_left(self):
        """Drafts a stopped attempt left on the server (Outlook's two-step send)."""
        if self.kind != "outlook":
            return 0
        world = self.server.world
        return len(world.message_ids(world.well_known("drafts")))

    def rows(self):
        cr = self.conn.cursor()
        cr.execute("""SELECT id, message_id, state, attempts, failure_kind, last_error, sent_filed, sent_remote_id,
                             handed_over FROM maildesk_outbox WHERE account_id = %s ORDER BY id""", [self.account_id])
        names = [column.name for column in cr.description]
        rows = [dict(zip(names, values, strict=True)) for values in cr.fetchall()]
        self.conn.commit()
        return rows

    def indexed(self, role="sent"):
        """{Message-ID: live rows} in the account's folder(s) of that role."""
        cr = self.conn.cursor()
        cr.execute("""SELECT i.message_id, count(*) FROM maildesk_message_index i
                        JOIN maildesk_folder f ON f.id = i.folder_id
                       WHERE i.account_id = %s AND f.role = %s AND NOT i.deleted_on_server GROUP BY 1""",
                   [self.account_id, role])
        result = dict(cr.fetchall())
        self.conn.commit()
        return result

    def assert_exactly_once(self):
        rows = self.rows()
        assert rows and all(row["state"] == "sent" for row in rows), [(r["state"], r["last_error"]) for r in rows]
        counts, sent = self.sent_counts(), self.indexed("sent")
        for row in rows:
            assert counts[row["message_id"]] == 1, (row, counts[row["message_id"]])
            assert row["sent_filed"] and sent.get(row["message_id"]) == 1, ("Sent row", row, sent)
        assert sum(counts.values()) == len(rows), counts
        assert self.drafts_left() == 0

    def worker_spec(self, **extra):
        source = {"url": self.server.url, "token_url": self.server.token_url,
                  "refresh_token": self.server.world.refresh_token} if self.kind == "gmail" \
            else graph_spec(self.server)
        return {"pg": self.connect.server, "dbname": self.connect.dbname, "kind": self.kind,
                "account_id": self.account_id, "server": source, "timeout": self.timeout,
                "settings": {"backoff_base": self.settings.backoff_base, "proof_wait": self.settings.proof_wait,
                             "lease_ttl": self.settings.lease_ttl}, **extra}


# ---------------------------------------------------------------------------
# a killable sender
# ---------------------------------------------------------------------------


class _Steps:
    def __init__(self, kill_at, kill_nth):
        self.kill_at, self.remaining = kill_at, kill_nth

    def __call__(self, name, _row_id=None):
        if name == self.kill_at:
            self.remaining -= 1
            if self.remaining <= 0:
                os.kill(os.getpid(), signal.SIGKILL)


def main(raw):
    """``kill_at``: ``claimed`` (sending committed), ``created`` (Outlook: the draft exists, not submitted),
    ``handed_over`` (the row marked "maybe sent", the send request about to leave), ``accepted`` (the server
    took it, nothing recorded), ``recorded`` (sent committed, Sent row not indexed), ``filed`` (indexed, not
    committed); ``kill_nth``: which occurrence."""
    spec = json.loads(raw)
    steps = _Steps(spec.get("kill_at"), spec.get("kill_nth", 1))

    def connect():
        return postgres.connect(spec["pg"], spec["dbname"])

    source, account_id, timeout = spec["server"], spec["account_id"], spec["timeout"]
    if spec["kind"] == "gmail":
        sync_world = GmailSync(connect, source["url"], source["refresh_token"], account_id=account_id,
                               token_url=source["token_url"])

        class Gmail(GmailTransport):
            def _handed_over(self):
                steps("handed_over")

        def transports(_account_id):
            return Gmail(gmail_config(source["url"], sync_world.tokens, timeout=timeout))
    else:
        sync_world = OutlookWorld(connect, source, account_id=account_id, timeout=timeout)

        class Outlook(OutlookTransport):
            def _created(self, draft_id):
                steps("created")

            def _handed_over(self):
                steps("handed_over")

        def transports(_account_id):
            return Outlook(sync_world.config())

    ports = make_ports(connect(), connect, transports, SendSettings(**spec["settings"]), step=steps)
    ports.providers = (spec["kind"],)
    for _round in range(spec.get("rounds", 1000)):
        done, left = send_due(ports, time.monotonic() + 60)
        if not done and not left:
            break
    print(json.dumps({"worker": os.getpid()}), flush=True)


if __name__ == "__main__":
    main(sys.argv[1])
