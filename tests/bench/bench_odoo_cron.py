"""The first-pass and throughput figures again, through Odoo's cron methods.

    python -m tests.bench.bench_odoo_cron /opt/odoo18      (scripts/bench runs it)

Creates a database with Basic installed, then, inside ``odoo-bin shell``,
connects a 10,000-message Dovecot mailbox and runs the bootstrap and
backfill crons' methods as the scheduler would, with real commits.
"""

import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def in_shell(env, messages):
    """Runs inside ``odoo-bin shell``: ``env`` is a superuser environment."""
    from tests.harness.dovecot import DovecotServer

    dovecot = DovecotServer().start()
    try:
        mailbox = dovecot.add_user()
        dovecot.seed(mailbox, count=messages)
        Account = env["mailbox.account"]
        account = Account.create({
            "name": "bench", "provider": "imap", "imap_host": mailbox.host, "imap_port": mailbox.port,
            "imap_security": "none", "imap_login": mailbox.login, "imap_password": mailbox.password,
        })
        env.cr.commit()

        def indexed():
            env.cr.execute("SELECT count(*) FROM maildesk_message_index WHERE account_id = %s", [account.id])
            return env.cr.fetchone()[0]

        started = time.perf_counter()
        Account._cron_maildesk_bootstrap()
        first = time.perf_counter() - started
        first_count = indexed()
        started = time.perf_counter()
        while Account.search_count([("id", "=", account.id), ("folder_ids.sync_state", "!=", "incremental")]):
            Account._cron_maildesk_bootstrap()
        # Every backfill call the scheduler would chain, until no history is left.
        pending = [("account_id", "=", account.id), ("selectable", "=", True), ("backfill_state", "=", "pending")]
        for _call in range(10_000):
            if not env["maildesk.folder"].search_count(pending):
                break
            Account._cron_maildesk_backfill()
        rest = time.perf_counter() - started
        total = indexed()
        print(f"  odoo_cron_connect_to_first_{first_count}_s                  {first:.3f}   <= 2 s")
        print(f"  odoo_cron_index_rate_msg_per_s                     {(total - first_count) / rest:>10.0f}")
        print(f"  odoo_cron_messages_indexed                         {total:>10}")
    finally:
        dovecot.stop()


def main():
    odoo = Path(sys.argv[1])
    messages = int(os.environ.get("MAILDESK_BENCH_MESSAGES", "10000"))
    db = f"maildesk_bench_{uuid.uuid4().hex[:8]}"
    base = [sys.executable, str(odoo / "odoo-bin"), f"--addons-path={odoo / 'addons'},{REPO}",
            f"--db_host={os.environ['PGHOST']}", f"--db_port={os.environ.get('PGPORT', '5432')}",
            f"--db_user={os.environ['PGUSER']}", "-d", db, "--log-level=warn", "--max-cron-threads=0"]
    subprocess.run([*base, "-i", "maildesk_mail_client", "--without-demo=all", "--stop-after-init"], check=True)
    script = (f"import sys; sys.path.insert(0, {str(REPO)!r})\n"
              f"from tests.bench.bench_odoo_cron import in_shell\n"
              f"in_shell(env, {messages})\n")
    print("\nMailDesk IMAP benchmark through Odoo's cron methods")
    try:
        subprocess.run([*base[:2], "shell", *base[2:], "--no-http"], input=script, text=True, check=True)
    finally:
        subprocess.run(["dropdb", "--if-exists", "-h", os.environ["PGHOST"], "-p", os.environ.get("PGPORT", "5432"),
                        "-U", os.environ["PGUSER"], db], check=False)


if __name__ == "__main__":
    main()
