"""A sync worker in a process of its own, so a test can kill it with SIGKILL.

    python -m tests.harness.worker '<json>'

The JSON names the database (PG* settings and name), the account, the
mailbox and the settings. The hook sleeps after every upsert so the test
can kill the process between, or in the middle of, chunks.
"""

import json
import sys
import time
import types

from maildesk_mail_client.application.ports import SyncSettings

from . import postgres
from .sync_world import SyncWorld


class SlowHooks:
    def __init__(self, delay):
        self.delay = delay
        self.calls = []

    def after_upsert(self, account_id, folder_id, rows):
        for row in rows:
            self.calls.append((account_id, folder_id, row.uid, row.index_id, row.is_new))
            time.sleep(self.delay)


def main(raw):
    spec = json.loads(raw)
    server, dbname = spec["pg"], spec["dbname"]
    mailbox = types.SimpleNamespace(**spec["mailbox"])
    world = SyncWorld(lambda: postgres.connect(server, dbname), mailbox, SyncSettings(**spec["settings"]),
                      holder=spec.get("holder"), account_id=spec["account_id"])
    world.ctx.hooks = SlowHooks(spec["delay"])
    world.bootstrap_all()
    world.backfill_all()
    print("worker finished", flush=True)


if __name__ == "__main__":
    main(sys.argv[1])
