"""Crashes and bad mail: a killed worker resumes, malformed MIME never blocks a chunk."""

import json
import os
import signal
import subprocess
import sys
import time

from maildesk_mail_client.application.ports import SyncSettings

from .harness.sync_world import SyncWorld
from .test_sync_engine import seed

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

MALFORMED = [
    # No closing boundary, and a part whose base64 is cut short.
    b"From: a@example.com\r\nSubject: cut\r\nMIME-Version: 1.0\r\n"
    b"Content-Type: multipart/mixed; boundary=XYZ\r\n\r\n--XYZ\r\nContent-Type: text/plain\r\n\r\nhi\r\n"
    b"--XYZ\r\nContent-Type: application/pdf; name=a.pdf\r\nContent-Transfer-Encoding: base64\r\n\r\nJVBERi0xLj\r\n",
    # A boundary that is never used.
    b"From: b@example.com\r\nSubject: nobound\r\nContent-Type: multipart/alternative; boundary=\"nope\"\r\n\r\n"
    b"just text\r\n",
    # Raw 8-bit junk and an unknown charset in the headers, a date that is not one.
    b"From: =?x-unknown?Q?J=F6rg?= <j@example.com>\r\nSubject: caf\xe9 \xff\xfe =?utf-8?B?!!!?=\r\n"
    b"Date: the day after tomorrow\r\nContent-Type: text/plain; charset=klingon\r\n\r\nbody\r\n",
    # Headers only, no body, no blank line.
    b"Subject: no body\r\nFrom: c@example.com",
    # Garbage that is not a message at all.
    b"\x00\x01 garbage \x02 line without colon\r\n\r\n\xff\xff\xff",
    # Nested multipart with an attachment, and a Message-ID with spaces.
    b"From: d@example.com\r\nSubject: nested\r\nMessage-ID: < spaced id @x >\r\nMIME-Version: 1.0\r\n"
    b"Content-Type: multipart/mixed; boundary=A\r\n\r\n--A\r\nContent-Type: multipart/alternative; boundary=B\r\n"
    b"\r\n--B\r\nContent-Type: text/plain\r\n\r\nx\r\n--B--\r\n--A\r\nContent-Type: image/png\r\n"
    b"Content-Disposition: attachment; filename=\"p.png\"\r\n\r\nPNG\r\n--A--\r\n",
]


def test_malformed_mime_is_indexed_and_never_blocks_the_chunk(pg_db, imap_account, dovecot):
    mailbox = imap_account(dovecot)
    seed(mailbox, 3)
    client = mailbox.client()
    for raw in MALFORMED:
        client.append("INBOX", raw)
    client.logout()
    seed(mailbox, 3, start=10)

    world = SyncWorld(pg_db, mailbox, SyncSettings(chunk=100))
    world.full_sync()
    assert world.assert_index_matches_server() == 6 + len(MALFORMED)
    rows = {row["subject"]: row for row in world.rows()}
    assert rows["nested"]["has_attachments"]
    assert rows["Message 11"]["from_address"] == "Sender 11 <s11@example.com>"
    odd = next(row for row in world.rows() if row["subject"] and row["subject"].startswith("caf"))
    assert odd["date"] is None or odd["parse_error"] is not None or odd["date"].year > 1990
    # The account is healthy: bad mail is the sender's problem, not a sync failure.
    cr = world.conn.cursor()
    cr.execute("SELECT auth_state, failure_count, last_error FROM mailbox_account WHERE id = %s",
               [world.account_id])
    assert cr.fetchone() == ("ok", 0, None)


def _low_uid(world):
    cr = world.conn.cursor()
    cr.execute("SELECT low_uid FROM maildesk_folder WHERE account_id = %s AND path = 'INBOX'", [world.account_id])
    row = cr.fetchone()
    world.conn.commit()
    return row[0] if row else None


def test_worker_killed_mid_bootstrap_resumes_exactly(pg_db, imap_account, dovecot):
    mailbox = imap_account(dovecot)
    seed(mailbox, 400)
    settings = {"first_chunk": 20, "chunk": 20, "bootstrap_limit": 1500, "lease_ttl": 300}
    world = SyncWorld(pg_db, mailbox, SyncSettings(**settings))
    spec = {
        "pg": pg_db.server, "dbname": pg_db.dbname, "account_id": world.account_id,
        "mailbox": {"host": mailbox.host, "port": mailbox.port, "login": mailbox.login, "password": mailbox.password},
        "settings": settings, "delay": 0.01,
    }
    worker = subprocess.Popen([sys.executable, "-m", "tests.harness.worker", json.dumps(spec)], cwd=REPO,
                              env={**os.environ, "PYTHONPATH": REPO})
    deadline = time.monotonic() + 60
    # Let it commit a few chunks below the first one, then kill it mid-chunk.
    while time.monotonic() < deadline and worker.poll() is None:
        low = _low_uid(world)
        if low and low < 400 - 80:
            break
        time.sleep(0.05)
    assert worker.poll() is None, "the worker finished before it could be killed; make it slower"
    worker.send_signal(signal.SIGKILL)
    worker.wait()

    # What survived is exactly what was checkpointed: every UID from low_uid up.
    low = _low_uid(world)
    indexed = world.index()
    assert indexed and min(indexed) == low and len(indexed) == 400 - low + 1

    # The dead worker's lease (host:pid:nonce) is not waited out: its process is
    # gone from this host, so the next run takes the account over at once.
    cr = world.conn.cursor()
    cr.execute("SELECT holder FROM maildesk_account_lease WHERE account_id = %s", [world.account_id])
    assert cr.fetchone()[0].split(":")[1] == str(worker.pid)
    world.conn.commit()
    world.full_sync()
    assert world.assert_index_matches_server() == 400
    assert len(world.ctx.hooks.calls) == low - 1, "the survivor indexes only what the dead one had not"
