"""Run the test servers for a process that cannot own them (the Odoo suites).

    python -m tests.harness.serve --imap-users 8 --write servers.json

Starts a Dovecot with ``--imap-users`` empty mailboxes, writes where they
are as JSON once they accept connections, and keeps running until SIGTERM
or SIGINT, when it stops them and removes their files.
"""

import argparse
import json
import os
import signal
import threading

from .dovecot import DovecotServer


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--imap-users", type=int, default=8)
    parser.add_argument("--write", required=True, help="where to write the servers' coordinates (JSON)")
    args = parser.parse_args()

    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())

    dovecot = DovecotServer().start()
    try:
        users = [dovecot.add_user(f"odoo-{n}") for n in range(args.imap_users)]
        info = {"imap": {"host": dovecot.host, "port": dovecot.port,
                         "users": [[user.login, user.password] for user in users]}}
        partial = f"{args.write}.partial"
        with open(partial, "w") as out:
            json.dump(info, out)
        os.replace(partial, args.write)  # readers never see half a file
        stop.wait()
    finally:
        dovecot.stop()


if __name__ == "__main__":
    main()
