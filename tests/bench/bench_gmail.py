"""Gmail sync benchmarks (issue 8). Prints figures; asserts nothing.

    python -m tests.bench.bench_gmail            # with PG* set, or a throwaway cluster is started
    python -m tests.bench.bench_gmail --quota 1500 --seconds 40

Everything is real but Google: the local fake Gmail (``tests/harness/gmail_server.py``,
real HTTP on loopback), the production adapter and google-api-python-client,
PostgreSQL with the engine's schema, the production use cases. Figures:

1. connect → the first 50 INBOX messages committed (the first bootstrap run,
   which ends there and notifies), with ``--latency`` (50 ms) added to every
   HTTP request; goal ≤ 2 s.
2. bootstrap throughput with the quota enforced on both sides, as a ratio
   to the quota's ceiling in ``messages.get`` a minute (15,000 units / 5 =
   3,000 a minute). SCALED: the fake and the adapter both run at ``--quota``
   units a minute (default 1,500, a tenth of Gmail's), so the ceiling is
   ``quota / 5`` gets a minute, and the run lasts ``--seconds`` (< 1 min);
   the ratio is scale-free. Shown over the whole run (the pacer's initial
   burst, a tenth of the quota, flatters it) and over its steady part
   (after the first ``--settle`` seconds), with the refusals (429/403).
   Past one minute the pacer also keeps the rolling minute at 95 % of the
   quota (``--seconds 120`` shows the sustained ratio, about 0.9).
   Goal ≥ 0.8 with no 429 storm.
3. a no-change incremental pass (the whole account run: lease, mailbox,
   one history.list, commit), with and without latency: time and HTTP
   round trips; goal 1 round trip + ≤ 20 ms. Leases on one kept connection,
   as in bench_imap (Odoo takes lease cursors from its pool).
"""

import argparse
import itertools
import random
import statistics
import threading
import time

from maildesk_mail_client.application.ports import SyncSettings
from maildesk_mail_client.application.use_cases import backfill, bootstrap_account, sync_account

from ..harness.engine import RecordingHooks
from ..harness.gmail_engine import GmailSync, seed
from ..harness.gmail_server import GmailServer
from .bench_imap import Database, kept_connection_leases, pg_server


def fresh_sync(db, server, settings=None, **config):
    sync = GmailSync.on(db.connect, server, settings or SyncSettings(), **config)
    sync.ctx.hooks = RecordingHooks()
    sync.ctx.leases = kept_connection_leases(db.connect)  # Odoo takes lease cursors from its pool
    return sync


def first_fifty(db, latency, messages):
    with GmailServer() as server:
        world = server.world
        world.quota_per_minute = 10**9
        labels = [world.add_label(f"Label {n}") for n in range(10)]
        seed(world, messages, labels, rng=random.Random(1))
        world.latency = latency
        sync = fresh_sync(db, server)
        world.calls.clear()
        started = time.perf_counter()
        report = bootstrap_account(sync.ctx, sync.account_id, time.monotonic() + 60)
        elapsed = time.perf_counter() - started
        inbox = sync.query("""SELECT count(*) FROM maildesk_message_index i JOIN maildesk_folder f
                               ON f.id = i.folder_id WHERE f.remote_id = 'INBOX' AND i.account_id = %s""",
                           [sync.account_id])[0][0]
        print(f"1. connect → first {inbox} INBOX messages committed, {latency * 1000:.0f} ms a request: "
              f"{elapsed:.2f} s, {world.calls['http_requests']} HTTP requests "
              f"({dict((k, v) for k, v in world.calls.items() if k.startswith('gmail.'))}), "
              f"notified: {bool(report and report.new)}  [goal ≤ 2 s]")


def throughput(db, quota, seconds, settle, messages):
    with GmailServer() as server:
        world = server.world
        world.quota_per_minute = quota
        labels = [world.add_label(f"Label {n}") for n in range(10)]
        seed(world, messages, labels, rng=random.Random(2))
        # Chunks of 50: a step is paced at the quota's rate, so the run stops close to its deadline.
        sync = fresh_sync(db, server, SyncSettings(chunk=50), quota_per_minute=quota)
        world.calls.clear()
        samples = []
        stop = threading.Event()

        def sample():
            while not stop.is_set():
                samples.append((time.monotonic(), world.calls["gmail.users.messages.get"]))
                time.sleep(0.25)

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        started = time.monotonic()
        deadline = started + seconds
        while time.monotonic() < deadline:
            report = bootstrap_account(sync.ctx, sync.account_id, deadline)
            if report is not None and report.remaining == 0:
                backfill(sync.ctx, deadline)
                break
        elapsed = time.monotonic() - started
        stop.set()
        sampler.join()
        gets = world.calls["gmail.users.messages.get"]
        ceiling = quota / 5 / 60  # gets a second
        # Batches arrive in lumps: measure between the first and the last lump after ``settle``.
        steady = [(when, count) for when, count in samples if when >= started + settle]
        lumps = [later for earlier, later in itertools.pairwise(steady) if later[1] > earlier[1]]
        steady_rate = ((lumps[-1][1] - lumps[0][1]) / (lumps[-1][0] - lumps[0][0])
                       if len(lumps) > 1 else float("nan"))
        burst = sync.opened[-1].client.pacer.capacity
        paced = (world.units_spent - burst) / elapsed / (quota / 60)
        scale = quota / 15000
        print(f"2. bootstrap with the quota enforced (SCALED x{scale:g}: {quota} units/min on the fake and the "
              f"adapter, ceiling {quota / 5:.0f} gets/min = 3,000 x {scale:g}), {elapsed:.1f} s: "
              f"{gets} messages.get ({gets / elapsed * 60:.0f}/min), ratio {gets / elapsed / ceiling:.2f} overall, "
              f"{steady_rate / ceiling:.2f} after the first {settle:.0f} s; units spent {world.units_spent} "
              f"({paced:.2f} of the quota's rate beyond the {burst:.0f}-unit burst), "
              f"refusals {world.refusals}, pacer waited {sync.opened[-1].client.pacer.waited:.1f} s  "
              "[goal ≥ 0.8, no 429 storm]")


def no_change_pass(db, latency, runs):
    with GmailServer() as server:
        world = server.world
        world.quota_per_minute = 10**9
        seed(world, 500, [world.add_label("A")], rng=random.Random(3))
        sync = fresh_sync(db, server, SyncSettings(folder_listing_interval=3600))
        sync.full_sync()
        sync_account(sync.ctx, sync.account_id, time.monotonic() + 60)  # the token's profile is known now
        world.latency = latency
        times, requests = [], []
        for _ in range(runs):
            world.calls.clear()
            started = time.perf_counter()
            sync_account(sync.ctx, sync.account_id, time.monotonic() + 60)
            times.append(time.perf_counter() - started)
            requests.append(world.calls["http_requests"])
        median = statistics.median(times)
        print(f"3. no-change incremental pass, {latency * 1000:.0f} ms a request: median {median * 1000:.1f} ms, "
              f"{statistics.median(requests):.0f} HTTP request(s) ({dict(world.calls)}), "
              f"beyond the round trips {(median - latency * statistics.median(requests)) * 1000:.1f} ms  "
              "[goal 1 round trip + ≤ 20 ms]")


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--latency", type=float, default=0.05)
    parser.add_argument("--messages", type=int, default=3000)
    parser.add_argument("--quota", type=int, default=1500)
    parser.add_argument("--seconds", type=float, default=40)
    parser.add_argument("--settle", type=float, default=10)
    parser.add_argument("--runs", type=int, default=20)
    args = parser.parse_args()
    with pg_server() as pg:
        db = Database(pg)
        try:
            first_fifty(db, args.latency, args.messages)
            throughput(db, args.quota, args.seconds, args.settle, args.messages)
            no_change_pass(db, 0.0, args.runs)
            no_change_pass(db, args.latency, args.runs)
        finally:
            db.drop()


if __name__ == "__main__":
    main()
