"""Sending benchmarks (issue 10). Prints figures; asserts nothing.

    python -m tests.bench.bench_send [--messages 1000] [--presses 20]

Everything is real: the SMTP sink (aiosmtpd on loopback, delivering each
account's own copy into Dovecot by IMAP APPEND), Dovecot (the proof and
the Sent copy), PostgreSQL with the engine's schema, the production use
case, repositories and SMTP transport. Figures:

- press Send → the sink has it: a row committed as ``maildesk_send``
  commits it (undo window 0), then one sender pass (what the triggered
  cron runs), until the sink holds the Message-ID. Odoo's cron pick-up
  after ``_trigger`` is not included (it is a NOTIFY to a waiting cron
  thread);
- ``--messages`` queued messages on two accounts, sent by two worker
  processes at once: wall time, throughput, and how many Message-IDs the
  sink counted more than once (must be 0) or never (must be 0).
"""

import argparse
import json
import statistics
import subprocess
import sys
import time

from maildesk_mail_client.application.sending import SendSettings

from ..harness.dovecot import DovecotServer
from ..harness.send_world import SendWorld
from ..harness.smtp_sink import SmtpSink
from .bench_imap import REPO, Database, pg_server


def _press_send(connect, dovecot, presses):
    mailbox = dovecot.add_user()
    with SmtpSink(local={f"{mailbox.login}@example.com": mailbox}) as sink:
        world = SendWorld(connect, sink, [mailbox], settings=SendSettings(proof_wait=120))
        account_id = next(iter(world.accounts))
        times = []
        for _press in range(presses):
            started = time.perf_counter()
            (row_id,) = world.queue(account_id, 1)
            world.send(account_id)
            message_id = next(row["message_id"] for row in world.rows(account_id) if row["id"] == row_id)
            sink.wait_for(message_id)
            times.append(time.perf_counter() - started)
        filed = all(row["sent_filed"] for row in world.rows(account_id))
    times.sort()
    print(f"press Send -> sink has it (Send committed, one sender pass, incl. Sent copy filed={filed}): "
          f"median {statistics.median(times) * 1000:.0f} ms, p95 {times[int(len(times) * 0.95) - 1] * 1000:.0f} ms, "
          f"max {times[-1] * 1000:.0f} ms over {presses} presses (goal <= 1 s)")


def _two_workers(connect, dovecot, count):
    mailboxes = [dovecot.add_user() for _ in range(2)]
    with SmtpSink(local={f"{m.login}@example.com": m for m in mailboxes}) as sink:
        world = SendWorld(connect, sink, mailboxes, settings=SendSettings(proof_wait=120, batch=100000))
        for account_id in world.accounts:
            world.queue(account_id, count // 2)
        spec = json.dumps(world.worker_spec())
        started = time.perf_counter()
        procs = [subprocess.Popen([sys.executable, "-m", "tests.harness.send_worker", spec], cwd=REPO)
                 for _ in range(2)]
        for proc in procs:
            proc.wait()
        elapsed = time.perf_counter() - started
        rows = [row for account_id in world.accounts for row in world.rows(account_id)]
        counts = sink.counts()
    doubled = sum(1 for row in rows if counts[row["message_id"]] > 1)
    lost = sum(1 for row in rows if counts[row["message_id"]] == 0)
    states = {state: sum(1 for row in rows if row["state"] == state) for state in {row["state"] for row in rows}}
    print(f"{count} queued messages, 2 accounts, 2 worker processes: {elapsed:.1f} s, "
          f"{count / elapsed:.0f} messages/s (each: SMTP send with the own copy delivered by IMAP APPEND, "
          f"Sent APPEND, own copy expunged, index row); doubled {doubled}, never sent {lost}, states {states}")


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--messages", type=int, default=1000)
    parser.add_argument("--presses", type=int, default=20)
    args = parser.parse_args()
    dovecot = DovecotServer().start()
    try:
        with pg_server() as server:
            db = Database(server)

            def connect(autocommit=False):
                return db.connect(autocommit)

            connect.server, connect.dbname = server, db.name
            try:
                _press_send(connect, dovecot, args.presses)
                _two_workers(connect, dovecot, args.messages)
            finally:
                db.drop()
    finally:
        dovecot.stop()


if __name__ == "__main__":
    main()
