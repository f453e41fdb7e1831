"""Inbox benchmarks (issue 7): list pages, search, scrolling, counts. Prints figures; asserts nothing.

    PYTHONPATH=. python -m tests.bench.bench_inbox            # a 100,000-message folder (and a 10,000 one)
    PYTHONPATH=. python -m tests.bench.bench_inbox --big      # also a 1,000,000-message folder (minutes)
    PYTHONPATH=. python -m tests.bench.bench_inbox --big 1000000 --runs 5

Uses PostgreSQL from the PG* variables, or starts a throwaway cluster. Rows are made by one
INSERT … SELECT generate_series per folder (tests/harness/inbox_data.py: varied subjects, about
2,000 senders at 31 domains, recipients, Cc, snippets, conversations), then indexed with the
production indexes (repositories/message_index.py::INDEXES) and vacuumed, as autovacuum leaves
a table. Every figure is the production repository's call (repositories/inbox.py) timed from
Python over a local socket: the server's time plus one round trip; the median of ``--runs``
warm calls, and the first (cold plan cache) call.

Goals (issue 7): first page of 50 ≤ 50 ms; search by sender or two subject words ≤ 100 ms;
share of a 10k folder reachable by scrolling 100%.
"""

import argparse
import contextlib
import statistics
import time
import uuid

from maildesk_mail_client.application.domain import Flags, FlagUpdate
from maildesk_mail_client.application.search_query import parse
from maildesk_mail_client.repositories.fulltext import document
from maildesk_mail_client.repositories.inbox import InboxRepository, Scope
from maildesk_mail_client.repositories.message_index import INDEXES, TABLE, MessageIndexRepository, create_indexes

from ..harness import postgres
from ..harness.inbox_data import create_folder, fill_folder

SCHEMA = "tests/harness/schema.sql"


def ms(seconds):
    return f"{seconds * 1000:8.1f} ms"


class Database:
    def __init__(self, env, name):
        self.env, self.name = env, name
        admin = postgres.connect(env, "postgres", autocommit=True)
        with admin.cursor() as cr:
            cr.execute(f'CREATE DATABASE "{name}"')
        admin.close()
        self.conn = postgres.connect(env, name, autocommit=False)
        with self.conn.cursor() as cr, open(SCHEMA) as schema:
            cr.execute(schema.read())
        self.conn.commit()

    def account(self, name):
        cr = self.conn.cursor()
        cr.execute("INSERT INTO mailbox_account (name, provider) VALUES (%s, 'imap') RETURNING id", [name])
        return cr.fetchone()[0]

    def drop(self):
        self.conn.close()
        admin = postgres.connect(self.env, "postgres", autocommit=True)
        with admin.cursor() as cr:
            cr.execute(f'DROP DATABASE IF EXISTS "{self.name}" WITH (FORCE)')
        admin.close()


def timed(call, runs):
    start = time.perf_counter()
    result = call()
    cold = time.perf_counter() - start
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        call()
        times.append(time.perf_counter() - start)
    return result, cold, statistics.median(times), max(times)


def report(label, call, runs):
    result, cold, median, worst = timed(call, runs)
    rows = len(result.rows) if hasattr(result, "rows") else len(result)
    print(f"  {label:<58} median {ms(median)}  max {ms(worst)}  cold {ms(cold)}  ({rows} rows)")
    return result


def build(env, size, with_small):
    """A database: account "big" with INBOX of ``size`` rows, Archive and Sent; account "other"."""
    db = Database(env, f"maildesk_bench_inbox_{uuid.uuid4().hex[:8]}")
    cr = db.conn.cursor()
    big, other = db.account("big"), db.account("other")
    folders = {
        "inbox": create_folder(cr, big, "INBOX", "inbox"),
        "archive": create_folder(cr, big, "Archive", "archive"),
        "sent": create_folder(cr, big, "Sent", "sent"),
        "other_inbox": create_folder(cr, other, "INBOX", "inbox"),
    }
    # As on a real install, where create_indexes() runs on the empty table: pages keep room for HOT updates.
    cr.execute(f"ALTER TABLE {TABLE} SET (fillfactor = 80)")
    start = time.perf_counter()
    fill_folder(cr, big, folders["inbox"], size, undated_every=9973, deleted_every=101)
    fill_folder(cr, big, folders["archive"], size // 10, start=size + 1)
    fill_folder(cr, big, folders["sent"], size // 20, start=2 * size + 1, thread_size=1)
    fill_folder(cr, other, folders["other_inbox"], 20_000, start=3 * size + 1)
    if with_small:
        folders["small"] = create_folder(cr, big, "Small", "other")
        fill_folder(cr, big, folders["small"], 10_000, start=4 * size + 1, undated_every=97, deleted_every=41,
                    same_date_every=7)
    db.conn.commit()
    filled = time.perf_counter() - start
    start = time.perf_counter()
    cr.execute("SET maintenance_work_mem = '256MB'")
    create_indexes(cr)
    db.conn.commit()
    indexed = time.perf_counter() - start
    vacuum = postgres.connect(env, db.name, autocommit=True)
    start = time.perf_counter()
    vacuum.cursor().execute(f"VACUUM ANALYZE {TABLE}")
    vacuumed = time.perf_counter() - start
    vacuum.close()
    cr.execute(f"SELECT count(*) FROM {TABLE}")
    total = cr.fetchone()[0]
    print(f"\n== {total:,} index rows (INBOX of {size:,}): filled in {filled:.1f} s (one INSERT … SELECT per "
          f"folder), indexed in {indexed:.1f} s, vacuumed in {vacuumed:.1f} s")
    return db, big, other, folders


def index_sizes(db):
    cr = db.conn.cursor()
    cr.execute(
        """
        SELECT c.relname, pg_relation_size(c.oid) FROM pg_class c
         WHERE c.relname = %s OR c.oid IN (SELECT indexrelid FROM pg_index WHERE indrelid = %s::regclass)
         ORDER BY 1
        """,
        [TABLE, TABLE],
    )
    print("  sizes: " + ", ".join(f"{name.replace('maildesk_message_index', '…')} {size / 2**20:.0f} MB"
                                  for name, size in cr.fetchall()))


def sample_sender_and_words(db, folder):
    cr = db.conn.cursor()
    cr.execute(f"SELECT from_address, subject FROM {TABLE} WHERE folder_id = %s AND uid = 4321", [folder])
    sender, subject = cr.fetchone()
    return sender.split("<")[1].rstrip(">"), " ".join(subject.replace("Re: ", "").split()[1:3])


def bench_size(env, size, runs, with_small):
    db, big, other, folders = build(env, size, with_small)
    try:
        index_sizes(db)
        repo = InboxRepository(db.conn.cursor())
        accounts = [big, other]
        inbox = Scope(Scope.FOLDER, folders["inbox"])
        address, two_words = sample_sender_and_words(db, folders["inbox"])
        first_name = address.split(".")[0]

        print(f"  -- first page of 50, folder of {size:,} (goal ≤ 50 ms)")
        first = report("folder, one row per conversation", lambda: repo.page(accounts, inbox), runs)
        report("folder, one row per message", lambda: repo.page(accounts, inbox, threads=False), runs)
        deep = _cursor_at(repo, inbox, 99 * 50)
        report("folder, 100th page (keyset cursor)", lambda: repo.page(accounts, inbox, cursor=deep), runs)
        report("next page", lambda: repo.page(accounts, inbox, cursor=first.next_cursor), runs)
        report("account (all folders)", lambda: repo.page(accounts, Scope(Scope.ACCOUNT, big)), runs)
        report("all inboxes (2 accounts)", lambda: repo.page(accounts, Scope(Scope.ALL_INBOXES)), runs)
        report("everywhere (2 accounts)", lambda: repo.page(accounts, Scope(Scope.EVERYWHERE)), runs)
        report("is:unread in the folder", lambda: repo.page(accounts, inbox, parse("is:unread")), runs)
        report("is:flagged in the folder", lambda: repo.page(accounts, inbox, parse("is:flagged")), runs)

        print(f"  -- search, {size:,}-message folder and everywhere (goal ≤ 100 ms)")
        searches = [
            (f"from:{address}", "by sender (whole address)"),
            (f"from:{first_name}", "by sender (first name)"),
            (f"from:{first_name[:3]}", "by sender (3-letter prefix)"),
            (two_words, "two subject words (free words)"),
            (f'subject:"{two_words}"', "two subject words (subject: phrase)"),
            ("invoice", "one common word"),
            ("example", "a word in every message"),
            (f"from:{first_name} is:unread has:attachment", "sender + flags"),
            ("after:2010-01-02 before:2010-01-05", "a date range"),
        ]
        for text, label in searches:
            query = parse(text)
            report(f"{label}: {text[:28]}", lambda q=query: repo.page(accounts, inbox, q), runs)
            report("  everywhere, messages", lambda q=query: repo.page(
                accounts, Scope(Scope.EVERYWHERE), q, threads=False), runs)

        print("  -- from: through its own document vs. the whole document and an ILIKE on the candidates")
        cr = db.conn.cursor()
        own = parse(f"from:{first_name}")
        _r, _c, own_ms, _w = timed(lambda: repo.page(accounts, inbox, own, threads=False), runs)

        def ilike():
            cr.execute(
                f"""SELECT id FROM {TABLE} m WHERE m.account_id = %s AND m.folder_id = %s AND NOT m.deleted_on_server
                     AND {document('all', 'm')} @@ to_tsquery('simple', %s) AND m.from_address ILIKE %s
                     ORDER BY m.date DESC, m.id DESC LIMIT 51""",
                [big, folders["inbox"], f"'{first_name}':*", f"%{first_name}%"])
            return cr.fetchall()

        _r, _c, ilike_ms, _w = timed(ilike, runs)
        print(f"  {'from: own document':<58} median {ms(own_ms)}")
        print(f"  {'from: all-words document + ILIKE on from_address':<58} median {ms(ilike_ms)}")

        print("  -- folder tree counts (unread, total of every folder: one GROUP BY)")
        report("folder_counts, 2 accounts", lambda: repo.folder_counts(accounts), runs)

        if with_small:
            scroll(repo, accounts, folders["small"], db)
        write_cost(db, big, folders["sent"])
        flag_cost(db, folders["inbox"], size)
    finally:
        db.drop()


def _cursor_at(repo, scope, offset):
    cr = repo.cr
    cr.execute(
        f"""SELECT date, id FROM {TABLE} WHERE folder_id = %s AND NOT deleted_on_server AND date IS NOT NULL
             ORDER BY date DESC, id DESC OFFSET %s LIMIT 1""", [scope.id, offset])
    return tuple(cr.fetchone())


def scroll(repo, accounts, folder, db):
    cr = db.conn.cursor()
    cr.execute(f"SELECT count(*) FROM {TABLE} WHERE folder_id = %s AND NOT deleted_on_server", [folder])
    live = cr.fetchone()[0]
    print(f"  -- scrolling a 10,000-message folder ({live:,} live rows, dates shared by 7, undated rows)")
    for threads in (False, True):
        seen, cursor, pages, times = set(), None, 0, []
        while True:
            start = time.perf_counter()
            page = repo.page(accounts, Scope(Scope.FOLDER, folder), cursor=cursor, limit=50, threads=threads)
            times.append(time.perf_counter() - start)
            pages += 1
            seen.update((row.id, row.thread_count) if threads else row.id for row in page.rows)
            cursor = page.next_cursor
            if cursor is None:
                break
        if threads:
            reached = sum(count for _id, count in seen)
            label = f"conversations: {len(seen):,} rows covering {reached:,} messages"
        else:
            reached = len(seen)
            label = f"messages: {reached:,} reached"
        print(f"  {label:<58} {reached / live:7.1%} in {pages} pages, page median {ms(statistics.median(times))}, "
              f"max {ms(max(times))}")


def write_cost(db, account, folder):
    """What the full-text indexes cost the engine's writes: 10,000 rows inserted with and without them."""
    cr = db.conn.cursor()
    results = {}
    for label, drop in (("all indexes", ()), ("without the GIN indexes", [i[0] for i in INDEXES if "fts" in i[0]])):
        cr.execute("SAVEPOINT w")
        for name in drop:
            cr.execute(f"DROP INDEX {name}")
        start = time.perf_counter()
        fill_folder(cr, account, folder, 10_000, start=10**7)
        results[label] = time.perf_counter() - start
        cr.execute("ROLLBACK TO SAVEPOINT w")
    db.conn.rollback()
    print("  -- writes: 10,000 rows in one statement: " + ", ".join(
        f"{label} {ms(seconds).strip()} ({seconds / 10_000 * 1e6:.0f} µs/row)" for label, seconds in results.items()))


def flag_cost(db, folder, size):
    """1,000 read-flag changes (the engine's update_flags), as they are and with an index on is_seen.

    Why no index covers is_seen (repositories/inbox.py: folder_counts): a flag change that touches no
    indexed column is a HOT update and writes no index entry, GIN tsvectors included.
    """
    cr = db.conn.cursor()
    repo = MessageIndexRepository(cr)
    uids = range(size // 2, size // 2 + 50_000, 50)
    results = {}
    for label, index in (("no index on is_seen", None),
                         ("with (account_id, folder_id, is_seen)",
                          f"CREATE INDEX bench_seen_idx ON {TABLE} (account_id, folder_id, is_seen)"
                          " WHERE NOT deleted_on_server")):
        if index:
            cr.execute(index)
            db.conn.commit()
        times = []
        for seen in (True, False, True):
            updates = [FlagUpdate(uid=uid, flags=Flags(seen=seen), modseq=uid) for uid in uids]
            start = time.perf_counter()
            repo.update_flags(folder, updates)
            db.conn.commit()
            times.append(time.perf_counter() - start)
        results[label] = statistics.median(times)
        if index:
            cr.execute("DROP INDEX bench_seen_idx")
            db.conn.commit()
    print("  -- 1,000 read-flag changes (update_flags): " + ", ".join(
        f"{label} {ms(seconds).strip()}" for label, seconds in results.items()))


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=100_000, help="rows of the big folder (100,000)")
    parser.add_argument("--big", type=int, nargs="?", const=1_000_000, default=0, metavar="N",
                        help="also a folder of N messages (1,000,000); as scripts/bench's --big 1000000")
    parser.add_argument("--runs", type=int, default=15, help="timed calls per figure (15)")
    args = parser.parse_args()
    with contextlib.ExitStack() as stack:
        env = postgres.server_from_env()
        if env is None:
            cluster = postgres.ThrowawayCluster()
            env = cluster.start()
            stack.callback(cluster.stop)
        postgres.wait_ready(env)
        bench_size(env, args.messages, args.runs, with_small=True)
        if args.big:
            bench_size(env, args.big, args.runs, with_small=False)


if __name__ == "__main__":
    main()
