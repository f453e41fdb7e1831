"""A sender in a process of its own, so a test can kill it with SIGKILL at an exact step.

    python -m tests.harness.send_worker '<json>'

JSON: ``pg`` and ``dbname`` (the database), ``accounts`` (``{"account_id",
"mailbox": {host, port, login, password}}``), ``sink`` (``{host, port}``),
``settings`` (SendSettings fields). ``kill_at`` names a step -- ``claimed``
(``sending`` committed, nothing sent), ``handed_over`` (the whole message
is on the wire, the server's answer unread), ``accepted`` (the server said
250, nothing recorded), ``recorded`` (``sent`` committed, no Sent copy),
``filed`` (the Sent copy appended, not recorded) -- and ``kill_nth`` which
occurrence of it: the process then SIGKILLs itself right there, as
``kill -9`` would. Without ``kill_at`` it sends until nothing is due.
"""

import json
import os
import signal
import sys
import time
import types

from maildesk_mail_client.application.sending import SendSettings
from maildesk_mail_client.application.use_cases.send_outbox import send_due
from maildesk_mail_client.providers.smtp.transport import SmtpTransport

from . import postgres
from .send_world import imap_config, make_ports, smtp_config


class _Steps:
    def __init__(self, kill_at, kill_nth):
        self.kill_at, self.remaining = kill_at, kill_nth

    def __call__(self, name, _row_id=None):
        if name == self.kill_at:
            self.remaining -= 1
            if self.remaining <= 0:
                os.kill(os.getpid(), signal.SIGKILL)


def main(raw):
    spec = json.loads(raw)
    steps = _Steps(spec.get("kill_at"), spec.get("kill_nth", 1))
    sink = types.SimpleNamespace(**spec["sink"])
    mailboxes = {entry["account_id"]: types.SimpleNamespace(**entry["mailbox"]) for entry in spec["accounts"]}

    class Transport(SmtpTransport):
        def _handed_over(self):
            steps("handed_over")

    def transports(account_id):
        mailbox = mailboxes[account_id]
        return Transport(smtp_config(sink, mailbox), imap_config(mailbox))

    def connect():
        return postgres.connect(spec["pg"], spec["dbname"])

    ports = make_ports(connect(), connect, transports, SendSettings(**spec.get("settings", {})), step=steps)
    ports.providers = ("imap",)
    for _round in range(spec.get("rounds", 100000)):
        done, left = send_due(ports, time.monotonic() + 60)
        if not done and not left:
            break
        if left:
            time.sleep(0.005)  # another sender holds an account: let it work
    print(json.dumps({"worker": os.getpid()}), flush=True)


if __name__ == "__main__":
    main(sys.argv[1])
