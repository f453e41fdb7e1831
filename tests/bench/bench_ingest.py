"""Ingest 1,000 aliased messages into Odoo's chatter, by two workers at once (DESIGN §3 flow 4).

    python -m tests.bench.bench_ingest /opt/odoo18      (PG* variables name the PostgreSQL)

Creates a database with Basic installed, then, inside ``odoo-bin shell``:
appends ``MAILDESK_BENCH_INGEST`` (1,000) messages addressed to an Odoo
alias (model res.partner) to a Dovecot mailbox, indexes them with the
bootstrap cron, and runs the alias-scan and import cron methods on two
threads, each with its own registry cursor and real commits, as two cron
workers would, until the queue is empty. Each import fetches the message
from Dovecot and calls ``mail.thread.message_process``. Prints the
figures; asserts nothing.
"""

import os
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
ALIAS_DOMAIN = "bench.test"


def _message(number):
    return (f"From: Candidate {number} <candidate{number}@example.com>\r\n"
            f"To: Jobs <jobs@{ALIAS_DOMAIN}>\r\n"
            f"Subject: Bench application {number}\r\n"
            f"Date: Mon, 01 Apr 2024 10:00:00 +0000\r\n"
            f"Message-ID: <bench-ingest-{number}@example.com>\r\n"
            f"MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n"
            f"Hello, here is application {number}.\r\n").encode()


def in_shell(env, messages):
    """Runs inside ``odoo-bin shell``: ``env`` is a superuser environment."""
    from odoo import SUPERUSER_ID, api

    from tests.harness.dovecot import DovecotServer

    dovecot = DovecotServer().start()
    try:
        mailbox = dovecot.add_user()
        client = dovecot.client(mailbox)
        for number in range(messages):
            client.append("INBOX", _message(number))
        client.logout()
        domain = env["mail.alias.domain"].create({"name": ALIAS_DOMAIN})
        env["mail.alias"].create({"alias_name": "jobs", "alias_domain_id": domain.id,
                                  "alias_model_id": env["ir.model"]._get_id("res.partner")})
        env["ir.config_parameter"].set_param("maildesk.bootstrap_limit", str(messages + 100))
        Account = env["mailbox.account"]
        account = Account.create({
            "name": "bench", "provider": "imap", "imap_host": mailbox.host, "imap_port": mailbox.port,
            "imap_security": "none", "imap_login": mailbox.login, "imap_password": mailbox.password,
        })
        env.cr.commit()
        indexed = 0
        for _call in range(1000):
            if indexed >= messages:
                break
            Account._cron_maildesk_bootstrap()
            env.cr.execute("SELECT count(*) FROM maildesk_message_index WHERE account_id = %s", [account.id])
            indexed = env.cr.fetchone()[0]
        env.cr.commit()

        registry = env.registry
        calls = []

        def worker():
            with registry.cursor() as cr:
                wenv = api.Environment(cr, SUPERUSER_ID, {})
                Queue = wenv["maildesk.ingest_queue"]
                idle = 0
                while idle < 2:
                    started = time.perf_counter()
                    Queue._cron_maildesk_alias_scan()
                    scanned = time.perf_counter()
                    Queue._cron_maildesk_ingest_import()
                    calls.append((scanned - started, time.perf_counter() - scanned))
                    cr.execute("SELECT count(*) FROM maildesk_ingest_queue WHERE state = 'pending'")
                    pending = cr.fetchone()[0]
                    cr.commit()
                    idle = idle + 1 if not pending else 0

        started = time.perf_counter()
        threads = [threading.Thread(target=worker) for _ in range(2)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        elapsed = time.perf_counter() - started

        env.cr.execute("SELECT state, count(*) FROM maildesk_ingest_queue GROUP BY state ORDER BY state")
        states = dict(env.cr.fetchall())
        env.cr.execute("SELECT count(*), count(DISTINCT message_id) FROM mail_message "
                       "WHERE message_id LIKE '<bench-ingest-%%'")
        imported, distinct = env.cr.fetchone()
        env.cr.execute("SELECT count(*), count(DISTINCT name) FROM res_partner WHERE name LIKE 'Bench application %%'")
        partners, distinct_partners = env.cr.fetchone()
        print(f"  ingest_messages_indexed                            {indexed:>10}")
        print(f"  ingest_queue_states                                {states}")
        print(f"  ingest_records_created                             {partners:>10}")
        print(f"  ingest_doubled_messages                            {imported - distinct:>10}   goal 0")
        print(f"  ingest_doubled_records                             {partners - distinct_partners:>10}   goal 0")
        print(f"  ingest_two_workers_elapsed_s                       {elapsed:>10.2f}")
        print(f"  ingest_throughput_msg_per_s                        {distinct / elapsed:>10.1f}")
        print(f"  ingest_cron_pairs_run                              {len(calls):>10}")
        print(f"  ingest_time_in_scan_s                              {sum(c[0] for c in calls):>10.2f}")
        print(f"  ingest_time_in_import_s                            {sum(c[1] for c in calls):>10.2f}")
    finally:
        dovecot.stop()


def main():
    odoo = Path(sys.argv[1]) if len(sys.argv) > 1 else Path("/opt/odoo18")
    messages = int(os.environ.get("MAILDESK_BENCH_INGEST", "1000"))
    db = f"maildesk_bench_{uuid.uuid4().hex[:8]}"
    base = [sys.executable, str(odoo / "odoo-bin"), f"--addons-path={odoo / 'addons'},{REPO}",
            f"--db_host={os.environ['PGHOST']}", f"--db_port={os.environ.get('PGPORT', '5432')}",
            f"--db_user={os.environ['PGUSER']}", "-d", db, "--log-level=warn", "--max-cron-threads=0"]
    subprocess.run([*base, "-i", "maildesk_mail_client", "--without-demo=all", "--stop-after-init"], check=True)
    script = (f"import sys; sys.path.insert(0, {str(REPO)!r})\n"
              f"from tests.bench.bench_ingest import in_shell\n"
              f"in_shell(env, {messages})\n")
    print(f"\nMailDesk ingest benchmark: {messages} aliased messages, two workers")
    try:
        subprocess.run([*base[:2], "shell", *base[2:], "--no-http"], input=script, text=True, check=True)
    finally:
        subprocess.run(["dropdb", "--if-exists", "-h", os.environ["PGHOST"], "-p", os.environ.get("PGPORT", "5432"),
                        "-U", os.environ["PGUSER"], db], check=False)


if __name__ == "__main__":
    main()
