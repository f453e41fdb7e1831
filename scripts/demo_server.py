"""The demo IMAP server of ``scripts/run``: a Dovecot that keeps its mail, user demo / demo.

    python scripts/demo_server.py --root DIR --port 1143 --ready FILE

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

UNAVAILABLE = 3


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--root", required=True, help="directory that keeps config and mail across runs")
    parser.add_argument("--port", type=int, required=True)
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
        Path(args.ready).write_text(f"{server.port}\n")
        stop.wait()
    finally:
        server.stop()


if __name__ == "__main__":
    main()
