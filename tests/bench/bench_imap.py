"""IMAP sync benchmarks (issue: "IMAP sync engine"). Prints figures; asserts nothing.

    ./scripts/bench            # or: python -m tests.bench.bench_imap [--messages N] [--big N]

Everything is real: Dovecot from the test harness, a PostgreSQL (PG* or a
throwaway cluster), the production engine and repositories. With Odoo
present (ODOO_PATH / /opt/odoo18), scripts/bench also times the first pass
through the Odoo cron method (tests/bench/bench_odoo_cron.py).
"""

import argparse
import contextlib
import json
import resource
import time
import uuid

from imapclient import IMAPClient

from maildesk_mail_client.application.ports import SyncSettings
from maildesk_mail_client.application.use_cases.account_run import run_on_account
from maildesk_mail_client.application.use_cases.sync_folder import sync_folder
from maildesk_mail_client.providers.imap.metadata import fetch_items

from ..harness import postgres
from ..harness.dovecot import DovecotServer
from ..harness.sync_world import SyncWorld

# Exactly the items the adapter asks for, so the ratio measures our overhead only.
RAW_ITEMS = fetch_items(condstore=True)


def _rss_high_water_mb():
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _reset_high_water():
    # Writing 5 to clear_refs resets VmHWM to the current RSS (Linux >= 4.0).
    with contextlib.suppress(OSError), open("/proc/self/clear_refs", "w") as refs:
        refs.write("5")


@contextlib.contextmanager
def database():
    env = postgres.server_from_env()
    cluster = None
    if env is None:
        cluster = postgres.ThrowawayCluster()
        env = cluster.start()
    postgres.wait_ready(env)
    name = f"maildesk_bench_{uuid.uuid4().hex[:8]}"
    admin = postgres.connect(env, "postgres", autocommit=True)
    admin.cursor().execute(f'CREATE DATABASE "{name}"')
    conn = postgres.connect(env, name, autocommit=True)
    with open(__file__.replace("bench/bench_imap.py", "harness/schema.sql")) as schema:
        conn.cursor().execute(schema.read())
    conn.close()
    try:
        yield lambda: postgres.connect(env, name)
    finally:
        admin.cursor().execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.close()
        if cluster:
            cluster.stop()


def raw_fetch_rate(mailbox, chunk):
    """Messages per second of a bare imapclient FETCH of the same items, same chunks."""
    client = IMAPClient(mailbox.host, port=mailbox.port, ssl=False)
    client.login(mailbox.login, mailbox.password)
    client.enable("CONDSTORE")
    client.select_folder("INBOX", readonly=True)
    uids = sorted(client.search("ALL"))
    started = time.perf_counter()
    for start in range(0, len(uids), chunk):
        client.fetch(uids[start:start + chunk], RAW_ITEMS)
    elapsed = time.perf_counter() - started
    client.logout()
    return len(uids) / elapsed


def bench_first_pass_and_throughput(connect, dovecot, count, figures):
    mailbox = dovecot.add_user()
    dovecot.seed(mailbox, count=count)
    for path in ("Sent", "Archive", "Drafts"):
        dovecot.seed(mailbox, folder=path, count=20)
    world = SyncWorld(connect, mailbox, SyncSettings(bootstrap_limit=1500))

    started = time.perf_counter()
    world.bootstrap_once()
    figures["connect_to_first_50_s"] = round(time.perf_counter() - started, 3)
    assert len(world.index()) == 50

    started = time.perf_counter()
    world.bootstrap_all()
    world.backfill_all()
    elapsed = time.perf_counter() - started
    indexed = world.assert_index_matches_server()
    engine_rate = (indexed - 50) / elapsed  # the first 50 were timed above
    raw_rate = raw_fetch_rate(mailbox, SyncSettings().chunk)
    figures["engine_index_rate_msg_per_s"] = round(engine_rate)
    figures["raw_imapclient_fetch_rate_msg_per_s"] = round(raw_rate)
    figures["throughput_ratio_engine_to_raw"] = round(engine_rate / raw_rate, 2)
    return world


def bench_no_change_pass(world, figures, rounds=50):
    """One folder pass with nothing new, on an open session, CONDSTORE server."""
    world.sync()  # settle: every folder incremental, cursors stored
    folders = [f for f in world.folders().values() if f.selectable]
    timings = []

    def passes(run):
        for _ in range(rounds):
            for folder in world.ctx.folders.list_for_account(world.account_id):
                started = time.perf_counter()
                sync_folder(run, folder)
                timings.append(time.perf_counter() - started)

    run_on_account(world.ctx, world.account_id, passes)
    timings.sort()
    figures["no_change_pass_per_folder_ms_median"] = round(1000 * timings[len(timings) // 2], 2)
    figures["no_change_pass_per_folder_ms_p95"] = round(1000 * timings[int(len(timings) * 0.95)], 2)
    started = time.perf_counter()
    world.sync()
    figures["no_change_account_run_ms_incl_login_and_list"] = round(1000 * (time.perf_counter() - started), 1)
    figures["no_change_folders"] = len(folders)


def bench_memory(connect, dovecot, big, figures):
    mailbox = dovecot.add_user()
    started = time.perf_counter()
    dovecot.seed(mailbox, count=big)
    figures["seed_big_s"] = round(time.perf_counter() - started, 1)
    world = SyncWorld(connect, mailbox, SyncSettings(bootstrap_limit=1500))
    _reset_high_water()
    before = _rss_high_water_mb()
    started = time.perf_counter()
    world.bootstrap_all()
    world.backfill_all()
    figures["index_big_s"] = round(time.perf_counter() - started, 1)
    figures["peak_rss_growth_indexing_big_mb"] = round(_rss_high_water_mb() - before, 1)
    figures["big_messages_indexed"] = world.assert_index_matches_server()


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--messages", type=int, default=10_000)
    parser.add_argument("--big", type=int, default=100_000, help="0 skips the memory figure")
    args = parser.parse_args()
    figures = {"messages": args.messages}
    dovecot = DovecotServer().start()
    try:
        with database() as connect:
            world = bench_first_pass_and_throughput(connect, dovecot, args.messages, figures)
            bench_no_change_pass(world, figures)
            if args.big:
                bench_memory(connect, dovecot, args.big, figures)
    finally:
        dovecot.stop()
    goals = {
        "connect_to_first_50_s": "<= 2 s",
        "throughput_ratio_engine_to_raw": ">= 0.5",
        "no_change_pass_per_folder_ms_median": "<= 20 ms",
        "peak_rss_growth_indexing_big_mb": "<= 150 MB",
    }
    print("\nMailDesk IMAP benchmark (engine, real Dovecot + PostgreSQL)")
    for name, value in figures.items():
        print(f"  {name:<48} {value!s:>10}   {goals.get(name, '')}")
    print("BENCH_JSON " + json.dumps(figures))


if __name__ == "__main__":
    main()
