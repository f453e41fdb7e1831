"""A sync worker in a process of its own, so a test can kill it with SIGKILL.

    python -m tests.harness.worker '<json>'

The JSON names the database (PG* settings and name), the account, the
mailbox and the settings. The hook sleeps after every upsert so the test
can kill the process between, or in the middle of, chunks.

Optional keys: ``mode`` is what the worker runs: ``bootstrap`` (the default:
bootstrap to the end, then backfill), ``sync`` (one incremental pass),
``backfill``, or ``loop`` (``rounds`` times, for each of ``accounts`` — a list of
``{"account_id", "mailbox"}`` — in an order shuffled by ``seed``: one bootstrap
run, one sync, one backfill). ``hook_table`` names a table of the test database
the hook also writes its rows to, in the engine's transaction, so what a killed
worker's rollback undid is undone there too.
"""

import json
import os
import random
import sys
import time
import types

from maildesk_mail_client.application.ports import SyncSettings
from maildesk_mail_client.providers.imap.mailbox import ImapMailbox

from . import postgres
from .sync_world import SyncWorld, imap_config


class SlowHooks:
    def __init__(self, delay, cr=None, table=None, who=None):
        self.delay = delay
        self.calls = []
        self.cr, self.table, self.who = cr, table, who

    def after_upsert(self, account_id, folder_id, rows):
        if self.table:
            self.cr.executemany(
                f"INSERT INTO {self.table} (who, account_id, folder_id, uid, index_id, is_new) "
                "VALUES (%s, %s, %s, %s, %s, %s)",
                [(self.who, account_id, folder_id, row.uid, row.index_id, row.is_new) for row in rows])
        for row in rows:
            self.calls.append((account_id, folder_id, row.uid, row.index_id, row.is_new))
            time.sleep(self.delay)


def _world(spec, account_id, mailbox):
    server, dbname = spec["pg"], spec["dbname"]
    world = SyncWorld(lambda: postgres.connect(server, dbname), types.SimpleNamespace(**mailbox),
                      SyncSettings(**spec["settings"]), holder=spec.get("holder"), account_id=account_id)
    world.ctx.hooks = SlowHooks(spec["delay"], world.conn.cursor(), spec.get("hook_table"), f"worker-{os.getpid()}")
    return world


def _loop(spec):
    """Several accounts, every use case, over and over: what two cron workers do to one database."""
    mailboxes = {entry["account_id"]: types.SimpleNamespace(**entry["mailbox"]) for entry in spec["accounts"]}
    worlds = [_world(spec, entry["account_id"], entry["mailbox"]) for entry in spec["accounts"]]
    for world in worlds:
        # Backfill claims any account's folder: open whichever mailbox it names.
        world.ctx.mailboxes = lambda account_id, w=world: ImapMailbox.open_account(
            imap_config(mailboxes[account_id]), w.ctx.settings.search_window)
    rng = random.Random(spec.get("seed", 0))
    for _round in range(spec.get("rounds", 3)):
        rng.shuffle(worlds)
        for world in worlds:
            world.bootstrap_once()
            world.sync()
            world.backfill_all()


def main(raw):
    spec = json.loads(raw)
    mode = spec.get("mode", "bootstrap")
    if mode == "loop":
        _loop(spec)
    else:
        world = _world(spec, spec["account_id"], spec["mailbox"])
        if mode == "bootstrap":
            world.bootstrap_all()
            world.backfill_all()
        elif mode == "sync":
            world.sync()
        elif mode == "backfill":
            world.backfill_all()
        else:
            raise ValueError(f"unknown worker mode {mode!r}")
    print("worker finished", flush=True)


if __name__ == "__main__":
    main(sys.argv[1])
