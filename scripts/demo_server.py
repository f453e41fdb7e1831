"""The demo mail servers of ``scripts/run``: a Dovecot that keeps its mail (user demo / demo) and an SMTP sink.

    python scripts/demo_server.py --root DIR --port 1143 --smtp-port 1025 --ready FILE

The SMTP sink takes the demo login (demo / demo), accepts every message and keeps each one as a
``.eml`` file in ``DIR/smtp-sink``; like a real provider's server, it also
delivers what is addressed to the demo account itself into its Dovecot INBOX
(MailDesk's proof that a message went out).

Runs in the project's virtualenv with the repository on PYTHONPATH: it is the
test harness's ``DovecotServer``, told to keep its files in DIR. The demo
mailbox is seeded on the first run (later runs find it complete), then FILE
is written and the server runs until SIGTERM or SIGINT, when Dovecot stops
gracefully. The mail stays in DIR, so UIDs are the same on the next run.

Exit status 3: Dovecot cannot run here (not installed, or not root).
"""

import argparse
import signal
import sys
import threading
from pathlib import Path

import demo_mailbox

from tests.harness.dovecot import DovecotServer, DovecotUnavailable
from tests.harness.smtp_sink import SmtpSink

#: The demo account's address (scripts/demo_account.py)
DEMO_ADDRESS = "demo@acme.example"

UNAVAILABLE = 3


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--root", required=True, help="directory that keeps config and mail across runs")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--smtp-port", type=int, required=True)
    parser.add_argument("--ready", required=True, help="file written once the demo mailbox can be used")
    args = parser.parse_args()

    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())

    # Plain IMAP only: the demo account connects without TLS, so no certificate is needed.
    server = DovecotServer(tls=False, port=args.port, root=args.root)
    try:
        server.start()
    except DovecotUnavailable as error:
        print(f"demo IMAP server: {error}", file=sys.stderr)
        sys.exit(UNAVAILABLE)
    try:
        account = server.add_user("demo", "demo")
        appended = demo_mailbox.seed(account.host, account.port, account.login, account.password)
        if any(appended.values()):
            print("demo mailbox seeded:", ", ".join(f"{folder} {count}" for folder, count in appended.items()),
                  flush=True)
        sink_dir = Path(args.root) / "smtp-sink"
        sink_dir.mkdir(parents=True, exist_ok=True)
        sink = SmtpSink(users={"demo": "demo"}, local={DEMO_ADDRESS: account},
                        maildir=str(sink_dir)).start(args.smtp_port)
        try:
            print(f"SMTP sink on 127.0.0.1:{sink.port}, every message sent kept in {sink_dir}", flush=True)
            Path(args.ready).write_text(f"{server.port}\n{sink.port}\n")
            stop.wait()
        finally:
            sink.stop()
    finally:
        server.stop()


if __name__ == "__main__":
    main()
