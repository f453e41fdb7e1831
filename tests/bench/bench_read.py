"""Opening messages: the reading pane's server time. Prints figures, asserts nothing.

    PYTHONPATH=. ~/.cache/maildesk/venv/bin/python -m tests.bench.bench_read [--messages 20] [--size 100000]

Starts a Dovecot and (unless ``PG*`` names one) a throwaway PostgreSQL,
indexes a mailbox of ~100 KB HTML messages with the real engine, then times
the read flow as the controller runs it (use_cases/read_message.py over the
real repositories and the real IMAP adapter), on a connection already open,
as a request's cursor is:

- a cached body: one cache read (median and p95 of many opens);
- an uncached 100 KB body from Dovecot: IMAP login, SELECT, ``BODY.PEEK[]``,
  MIME parsing, sanitizing both HTML versions, storing the row under the
  advisory lock, commit (each message opened once);
- 10 concurrent opens of one uncached message: how many fetches reached the server.
"""

import argparse
import statistics
import time
import uuid

from maildesk_mail_client.application.use_cases.read_message import render
from maildesk_mail_client.repositories.message_index import create_indexes

from ..harness import postgres
from ..harness.dovecot import DovecotServer
from ..harness.pg_fixtures import SCHEMA
from ..harness.read_world import ReadWorld, cid_url, html_message
from .bench_imap import pg_server


def _database(server):
    name = f"maildesk_bench_read_{uuid.uuid4().hex[:8]}"
    admin = postgres.connect(server, "postgres", autocommit=True)
    admin.cursor().execute(f'CREATE DATABASE "{name}"')
    conn = postgres.connect(server, name, autocommit=True)
    with conn.cursor() as cr, open(SCHEMA) as schema:
        cr.execute(schema.read())
        create_indexes(cr)
    conn.close()

    def connect(autocommit=False):
        return postgres.connect(server, name, autocommit=autocommit)

    def drop():
        admin.cursor().execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.close()

    return connect, drop


def _ms(seconds):
    return seconds * 1000


def _line(name, values, goal=""):
    values = sorted(values)
    p95 = values[min(len(values) - 1, int(len(values) * 0.95))]
    print(f"  {name:<52} median {_ms(statistics.median(values)):8.1f} ms   p95 {_ms(p95):8.1f} ms   "
          f"n={len(values):<4} {goal}")


def run(messages, size, cached_opens):
    dovecot = DovecotServer(tls=False).start()
    try:
        with pg_server() as server:
            connect, drop = _database(server)
            try:
                mailbox = dovecot.add_user()
                world = ReadWorld(connect, mailbox)
                for number in range(messages + 1):
                    world.append(html_message(size=size, subject=f"Newsletter {number}",
                                              message_id=f"<bench-read-{number}@maildesk.test>"))
                ids = list(world.index_rows().values())
                concurrent_id, ids = ids[-1], ids[:-1]
                conn = connect()

                uncached = []
                for index_id in ids:
                    started = time.perf_counter()
                    opened = world.open(index_id, conn=conn)
                    uncached.append(time.perf_counter() - started)
                    assert opened.fetched
                raw_size = opened.body.raw_size

                cached = []
                for number in range(cached_opens):
                    index_id = ids[number % len(ids)]
                    started = time.perf_counter()
                    opened = world.open(index_id, conn=conn)
                    cached.append(time.perf_counter() - started)
                    assert not opened.fetched

                raw = world.open(ids[0], conn=conn, with_raw=True).body.raw
                rendering = []
                for _ in range(20):
                    started = time.perf_counter()
                    render(raw, cid_url(ids[0]))
                    rendering.append(time.perf_counter() - started)

                fetches_before = world.fetches
                started = time.perf_counter()
                world.open_concurrently(concurrent_id, count=10)
                concurrent_wall = time.perf_counter() - started
                concurrent_fetches = world.fetches - fetches_before
                conn.close()
            finally:
                drop()
    finally:
        dovecot.stop()

    print(f"\nMailDesk read benchmark: {messages} messages of {raw_size:,} bytes (HTML + text + image + PDF)")
    _line("open a cached body (server time)", cached, "goal <= 50 ms")
    _line(f"open an uncached {raw_size // 1000} KB body from Dovecot (server time)", uncached, "goal <= 300 ms")
    _line("  of which: parse + sanitize (both HTML versions)", rendering)
    print(f"  {'10 concurrent opens of one uncached message':<52} {concurrent_fetches} fetch(es) from the server "
          f"(goal 1), {_ms(concurrent_wall):.0f} ms for all ten")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=20, help="uncached messages to open (default 20)")
    parser.add_argument("--size", type=int, default=100_000, help="bytes per message (default 100000)")
    parser.add_argument("--cached-opens", type=int, default=200, help="cached opens to time (default 200)")
    args = parser.parse_args()
    run(args.messages, args.size, args.cached_opens)


if __name__ == "__main__":
    main()
