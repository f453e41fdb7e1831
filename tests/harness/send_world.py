"""Accounts whose outbox the real sender sends to the SMTP sink, with a real Dovecot and PostgreSQL.

``SendWorld`` queues messages (rows as ``maildesk_send`` leaves them), runs
the production use case with the production repositories and the
production SMTP transport, and reads the truth back: the sink's counts,
the Sent folder, the index.
"""

from __future__ import annotations

import datetime as dt
import time

from maildesk_mail_client.application import outgoing_mime
from maildesk_mail_client.application.domain import FolderRole, RemoteFolder
from maildesk_mail_client.application.sending import SendSettings
from maildesk_mail_client.application.use_cases.send_outbox import SendPorts, send_account, send_due
from maildesk_mail_client.orm.engine_context import lease_holder
from maildesk_mail_client.providers.imap.connection import ImapConfig
from maildesk_mail_client.providers.smtp.connection import SmtpConfig
from maildesk_mail_client.providers.smtp.transport import SmtpTransport
from maildesk_mail_client.repositories import AccountLeaseRepository, FolderRepository, MessageIndexRepository
from maildesk_mail_client.repositories.conflicts import CONFLICTS
from maildesk_mail_client.repositories.lease_holders import is_dead_local_holder
from maildesk_mail_client.repositories.outbox import OutboxRepository

from .engine import ConnectionCheckpoint, RecordingNotifier, UtcClock, lease_transaction

#: fast retries for tests: the backoff and the proof's wait are what the tests look at, not the minutes
TEST_SETTINGS = SendSettings(backoff_base=0, proof_wait=0, lease_ttl=30)


def utcnow():
    return dt.datetime.now(dt.timezone.utc).replace(tzinfo=None)


def address_of(mailbox):
    return f"{mailbox.login}@example.com"


def imap_config(mailbox):
    return ImapConfig(host=mailbox.host, port=mailbox.port, security="none", login=mailbox.login,
                      password=mailbox.password, timeout=10)


def smtp_config(sink, mailbox, login="", password=""):
    return SmtpConfig(host=sink.host, port=sink.port, security="none", login=login, password=password,
                      own_address=address_of(mailbox), timeout=10)


def prepare_mailbox(mailbox):
    """Dovecot creates no Sent folder by itself: a client (or we) creates it once."""
    client = mailbox.client()
    try:
        if not client.folder_exists("Sent"):
            client.create_folder("Sent")
    finally:
        client.logout()


def create_account(conn, mailbox, name=None):
    cr = conn.cursor()
    cr.execute("INSERT INTO mailbox_account (name, provider, email) VALUES (%s, 'imap', %s) RETURNING id",
               [name or mailbox.login, address_of(mailbox)])
    account_id = cr.fetchone()[0]
    folders = FolderRepository(cr)
    folders.insert(account_id, RemoteFolder(path="INBOX", name="INBOX", delimiter="/", role=FolderRole.INBOX,
                                            remote_id="INBOX"))
    folders.insert(account_id, RemoteFolder(path="Sent", name="Sent", delimiter="/", role=FolderRole.SENT,
                                            remote_id="Sent"))
    conn.commit()
    return account_id


def queue(conn, account_id, sender, count=1, to="bob@example.net", bcc="", subject="Hello", send_after=None):
    """Rows as maildesk_send leaves them: final MIME, fixed Message-ID, queued."""
    cr = conn.cursor()
    ids = []
    for number in range(count):
        message_id = outgoing_mime.new_message_id(sender)
        mime = outgoing_mime.build(outgoing_mime.Outgoing(
            from_name="Sender", from_email=sender, message_id=message_id, subject=f"{subject} {number}", to=to,
            bcc=bcc, text=f"Message {number}\n.\n..dots stay\n", html=f"<p>Message {number}</p>"))
        cr.execute(
            """INSERT INTO maildesk_outbox (account_id, state, message_id, subject, email_to, email_bcc, mime,
                                            mime_size, send_after, attempts, max_attempts, create_date, write_date)
               VALUES (%s, 'queued', %s, %s, %s, %s, %s, %s, %s, 0, 5, now(), now()) RETURNING id""",
            [account_id, message_id, f"{subject} {number}", to, bcc, mime, len(mime), send_after or utcnow()])
        ids.append(cr.fetchone()[0])
    conn.commit()
    return ids


def make_ports(conn, connect, transports, settings=TEST_SETTINGS, holder=None, step=None):
    cr = conn.cursor()
    return SendPorts(
        outbox=OutboxRepository(cr), folders=FolderRepository(cr), index=MessageIndexRepository(cr),
        leases=AccountLeaseRepository(lease_transaction(connect), is_dead=is_dead_local_holder),
        transports=transports, checkpoint=ConnectionCheckpoint(conn), clock=UtcClock(),
        notifier=RecordingNotifier(), settings=settings, holder=holder or lease_holder(), conflicts=CONFLICTS,
        step=step)


class SendWorld:
    """Accounts (Dovecot mailbox + the sink) and the sender over one database."""

    def __init__(self, connect, sink, mailboxes, settings=TEST_SETTINGS, smtp_login=None):
        self.connect = connect
        self.sink = sink
        self.conn = connect()
        self.settings = settings
        self.smtp_login = smtp_login or {}
        self.accounts = {}
        for mailbox in mailboxes:
            prepare_mailbox(mailbox)
            self.accounts[create_account(self.conn, mailbox)] = mailbox
        self.ports = make_ports(self.conn, connect, self.transport, settings)

    def transport(self, account_id):
        mailbox = self.accounts[account_id]
        login, password = self.smtp_login.get(account_id, ("", ""))
        return SmtpTransport(smtp_config(self.sink, mailbox, login, password), imap_config(mailbox))

    def queue(self, account_id, count=1, **options):
        return queue(self.conn, account_id, address_of(self.accounts[account_id]), count, **options)

    def send(self, account_id, seconds=60):
        return send_account(self.ports, account_id, time.monotonic() + seconds)

    def send_all(self, rounds=50):
        """Run the sender until nothing is due (rows awaiting a backoff may remain)."""
        for _round in range(rounds):
            done, left = send_due(self.ports, time.monotonic() + 60)
            if not done and not left:
                return
        raise AssertionError("the sender did not finish")

    def settle(self, timeout=30.0):
        """Run the sender until no row is queued or sending (backoffs and the proof's wait included)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.send_all()
            if not any(row["state"] in ("queued", "sending") for row in self.rows()):
                return
            time.sleep(0.1)
        raise AssertionError(f"rows still waiting: {[(r['state'], r['last_error']) for r in self.rows()]}")

    def worker_spec(self, **extra):
        return {
            "pg": self.connect.server, "dbname": self.connect.dbname,
            "accounts": [{"account_id": account_id, "mailbox": {"host": m.host, "port": m.port, "login": m.login,
                                                                "password": m.password}}
                         for account_id, m in self.accounts.items()],
            "sink": {"host": self.sink.host, "port": self.sink.port},
            "settings": {"backoff_base": self.settings.backoff_base, "proof_wait": self.settings.proof_wait,
                         "lease_ttl": self.settings.lease_ttl},
            **extra,
        }

    # -- the truth ------------------------------------------------------------------

    def rows(self, account_id=None):
        cr = self.conn.cursor()
        cr.execute("""SELECT id, account_id, message_id, state, attempts, failure_kind, last_error, sent_filed,
                             sent_remote_id FROM maildesk_outbox
                       WHERE %(a)s IS NULL OR account_id = %(a)s ORDER BY id""",
                   {"a": account_id})
        names = [column.name for column in cr.description]
        rows = [dict(zip(names, values, strict=True)) for values in cr.fetchall()]
        self.conn.commit()
        return rows

    def message_ids_in(self, account_id, folder):
        """Message-IDs in a Dovecot folder, with how many times each is there."""
        client = self.accounts[account_id].client()
        try:
            client.select_folder(folder, readonly=True)
            uids = client.search("ALL")
            found = client.fetch(uids, ["BODY.PEEK[HEADER.FIELDS (MESSAGE-ID)]"]) if uids else {}
        finally:
            client.logout()
        counts = {}
        for item in found.values():
            value = item[b"BODY[HEADER.FIELDS (MESSAGE-ID)]"].decode().split(":", 1)[-1].strip()
            counts[value] = counts.get(value, 0) + 1
        return counts

    def indexed_sent(self, account_id):
        cr = self.conn.cursor()
        cr.execute("""SELECT i.message_id, count(*) FROM maildesk_message_index i
                        JOIN maildesk_folder f ON f.id = i.folder_id
                       WHERE i.account_id = %s AND f.role = 'sent' AND NOT i.deleted_on_server GROUP BY 1""",
                   [account_id])
        result = dict(cr.fetchall())
        self.conn.commit()
        return result
