"""The repositories' SQL against a real PostgreSQL (tests/harness/schema.sql)."""

import datetime as dt
import threading

from maildesk_mail_client.application.domain import Flags, FlagUpdate, FolderState, MessageMeta, RemoteFolder
from maildesk_mail_client.repositories import (
    AccountLeaseRepository,
    AccountRepository,
    FolderRepository,
    MessageIndexRepository,
)

from .harness.engine import create_account, lease_transaction


def _utcnow():
    return dt.datetime.now(dt.timezone.utc).replace(tzinfo=None)


def _folder(conn, account_id, path="INBOX", role="inbox"):
    state = FolderRepository(conn.cursor()).insert(account_id, RemoteFolder(path, path, "/", role))
    conn.commit()
    return state


def _meta(uid, seen=False, **values):
    return MessageMeta(uid=uid, flags=Flags(seen=seen), subject=f"m{uid}",
                       message_id=f"<m{uid}@example.com>", **values)


def test_int8_cursors_round_trip(pg_db):
    conn = pg_db()
    account_id = create_account(conn)
    repo = FolderRepository(conn.cursor())
    state = _folder(conn, account_id)
    state.uidvalidity = 4_000_000_000
    state.uidnext = 4_294_967_295
    state.highest_modseq = 2**62
    state.last_uid = 4_294_967_294
    repo.save_cursors(state)
    conn.commit()
    again = repo.get(state.id)
    assert (again.uidvalidity, again.uidnext, again.highest_modseq, again.last_uid) == (
        4_000_000_000, 4_294_967_295, 2**62, 4_294_967_294)


def test_upsert_is_idempotent_by_delivery_key(pg_db):
    conn = pg_db()
    account_id = create_account(conn)
    folder = _folder(conn, account_id)
    index = MessageIndexRepository(conn.cursor())

    first = index.upsert(account_id, folder.id, "imap", [_meta(1), _meta(2), _meta(4_000_000_000)])
    assert sorted((r.uid, r.is_new) for r in first) == [(1, True), (2, True), (4_000_000_000, True)]
    # A replayed chunk (a crash after the upsert, before the cursor) changes nothing.
    assert index.upsert(account_id, folder.id, "imap", [_meta(1), _meta(2)]) == []
    changed = index.upsert(account_id, folder.id, "imap", [_meta(1, seen=True), _meta(2)])
    assert [(r.uid, r.is_new) for r in changed] == [(1, False)]
    assert {r.index_id for r in changed} == {r.index_id for r in first if r.uid == 1}

    cr = conn.cursor()
    cr.execute("SELECT count(*), count(DISTINCT delivery_key) FROM maildesk_message_index")
    assert cr.fetchone() == (3, 3)


def test_thread_key_from_references_root(pg_db):
    conn = pg_db()
    account_id = create_account(conn)
    folder = _folder(conn, account_id)
    index = MessageIndexRepository(conn.cursor())
    index.upsert(account_id, folder.id, "imap", [
        MessageMeta(uid=1, message_id="<Root@x>"),
        MessageMeta(uid=2, message_id="<b@x>", in_reply_to="<root@x>"),
        MessageMeta(uid=3, message_id="<c@x>", in_reply_to="<b@x>", references="<root@x> <b@x>"),
        MessageMeta(uid=4),
    ])
    cr = conn.cursor()
    cr.execute("SELECT uid, thread_key FROM maildesk_message_index ORDER BY uid")
    rows = dict(cr.fetchall())
    assert rows[1] == rows[2] == rows[3] == "root@x"
    assert rows[4] == f"{account_id}:imap:{folder.id}:4"


def test_mark_deleted_then_revive_and_flag_updates(pg_db):
    conn = pg_db()
    account_id = create_account(conn)
    folder = _folder(conn, account_id)
    index = MessageIndexRepository(conn.cursor())
    index.upsert(account_id, folder.id, "imap", [_meta(uid) for uid in (1, 2, 3)])

    assert index.mark_deleted(folder.id, {"2", "99"}) == 1
    assert index.mark_deleted(folder.id, {"2"}) == 0
    assert index.live_uids(folder.id) == {1, 3}
    assert index.live_uids(folder.id, 2, 3) == {3}

    updates = [FlagUpdate(1, Flags(seen=True, flagged=True), modseq=7), FlagUpdate(50, Flags(seen=True)),
               FlagUpdate(3, Flags())]
    assert [(r.uid, r.is_new) for r in index.update_flags(folder.id, updates)] == [(1, False)]
    revived = index.upsert(account_id, folder.id, "imap", [_meta(2)])
    assert [(r.uid, r.is_new) for r in revived] == [(2, False)]
    assert index.live_uids(folder.id) == {1, 2, 3}
    assert index.purge_folder(folder.id) == 3


def test_lease_is_exclusive_and_expires(pg_db):
    connect = pg_db
    account_id = create_account(connect())
    leases = AccountLeaseRepository(lease_transaction(connect))

    assert leases.acquire(account_id, "sync", "A", ttl_seconds=60)
    assert not leases.acquire(account_id, "sync", "B", ttl_seconds=60)
    assert leases.acquire(account_id, "other", "B", ttl_seconds=60)  # purposes are independent
    assert leases.acquire(account_id, "sync", "A", ttl_seconds=60)  # re-entrant for its holder
    assert leases.renew(account_id, "sync", "A", ttl_seconds=0)  # A "dies": its lease runs out
    assert leases.acquire(account_id, "sync", "B", ttl_seconds=60)
    assert not leases.renew(account_id, "sync", "A", ttl_seconds=60)  # A finds out it lost it
    assert leases.holder_of(account_id, "sync") == "B"
    leases.release(account_id, "sync", "A")  # not A's any more: no effect
    assert leases.holder_of(account_id, "sync") == "B"
    leases.release(account_id, "sync", "B")
    assert leases.holder_of(account_id, "sync") is None


def test_lease_race_has_one_winner(pg_db):
    connect = pg_db
    account_id = create_account(connect())
    leases = AccountLeaseRepository(lease_transaction(connect))
    start = threading.Barrier(8)
    winners = []

    def contend(name):
        start.wait()
        if leases.acquire(account_id, "sync", name, ttl_seconds=60):
            winners.append(name)

    threads = [threading.Thread(target=contend, args=(f"w{i}",)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(winners) == 1


def test_backfill_claims_skip_locked_rows(pg_db):
    conn_a, conn_b = pg_db(), pg_db()
    account_1, account_2 = create_account(conn_a, "one"), create_account(conn_a, "two")
    folders = FolderRepository(conn_a.cursor())
    ids = []
    for account_id, path in ((account_1, "a"), (account_1, "b"), (account_2, "c")):
        state = folders.insert(account_id, RemoteFolder(path, path, "/"))
        state.sync_state = "incremental"
        folders.save_cursors(state)
        ids.append(state.id)
    conn_a.commit()

    claimed_a = folders.claim_backfill(limit=2)
    claimed_b = FolderRepository(conn_b.cursor()).claim_backfill(limit=5)
    assert len(claimed_a) == 2 and len(claimed_b) == 1
    assert {f.id for f in claimed_a}.isdisjoint({f.id for f in claimed_b})
    conn_a.rollback()
    conn_b.rollback()

    only_two = folders.claim_backfill(limit=5, exclude_accounts=[account_1])
    assert [f.account_id for f in only_two] == [account_2]
    conn_a.rollback()
    assert folders.count_backfill_pending() == 3


def test_due_accounts_skip_backoff_and_reconnect(pg_db):
    conn = pg_db()
    ok, backing_off, broken, gmail = (create_account(conn, n) for n in ("ok", "backoff", "broken", "g"))
    cr = conn.cursor()
    cr.execute("UPDATE mailbox_account SET provider = 'gmail' WHERE id = %s", [gmail])
    accounts = AccountRepository(cr)
    accounts.record_failure(backing_off, "Connection refused", 1,
                            _utcnow() + dt.timedelta(minutes=5))
    accounts.record_reconnect_needed(broken, "Login refused", accounts.edited_at(broken))
    # An admin saved the account while the failing run was under way: it stays "ok".
    seen_at_start = accounts.edited_at(ok)
    cr.execute("UPDATE mailbox_account SET write_date = now() AT TIME ZONE 'UTC' WHERE id = %s", [ok])
    accounts.record_reconnect_needed(ok, "Login refused", seen_at_start)
    assert accounts.due_for_sync("imap") == [ok]
    assert accounts.failure_count(backing_off) == 1
    accounts.record_success(backing_off, _utcnow())
    assert accounts.failure_count(backing_off) == 0
    assert set(accounts.due_for_sync("imap")) == {ok, backing_off}
    # Never discovered: due for bootstrap; discovered with every folder incremental: not.
    assert set(accounts.due_for_bootstrap("imap")) == {ok, backing_off}
    accounts.mark_folders_synced(ok)
    assert accounts.due_for_bootstrap("imap") == [backing_off]


def test_folder_state_defaults(pg_db):
    conn = pg_db()
    account_id = create_account(conn)
    state = _folder(conn, account_id)
    assert isinstance(state, FolderState)
    assert (state.sync_state, state.backfill_state, state.low_uid, state.last_uid) == ("new", "pending", 0, 0)
    assert state.uidvalidity is None and state.walk_below == 1


def test_text_ids_of_every_provider_share_one_index(pg_db):
    """Gmail ids are unsigned 64-bit hex, Graph ids ~150 characters: text, not numbers."""
    conn = pg_db()
    account_id = create_account(conn, provider="gmail")
    folder = _folder(conn, account_id)
    index = MessageIndexRepository(conn.cursor())
    gmail_id, graph_id = "ffffffffffffffff", "AAMkAD" + "x" * 150
    first = index.upsert(account_id, folder.id, "gmail", [
        MessageMeta(remote_id=gmail_id, subject="g"), MessageMeta(remote_id=graph_id, subject="o")])
    assert sorted((r.remote_id, r.uid, r.is_new) for r in first) == [(graph_id, None, True), (gmail_id, None, True)]
    changed = index.update_flags(folder.id, [FlagUpdate(remote_id=gmail_id, flags=Flags(seen=True))])
    assert [r.remote_id for r in changed] == [gmail_id]
    assert index.mark_deleted(folder.id, [graph_id]) == 1
    cr = conn.cursor()
    cr.execute("SELECT delivery_key FROM maildesk_message_index WHERE remote_id = %s", [gmail_id])
    assert cr.fetchone()[0] == f"{account_id}:gmail:{folder.id}:{gmail_id}"


def test_incomplete_rows_heal_or_give_up_after_the_cap(pg_db):
    conn = pg_db()
    account_id = create_account(conn)
    folder = _folder(conn, account_id)
    index = MessageIndexRepository(conn.cursor())
    refused = MessageMeta(uid=1, parse_error="the server refused", refetch=True)
    garbled = MessageMeta(uid=2, parse_error="could not be parsed")
    index.upsert(account_id, folder.id, "imap", [refused, garbled, MessageMeta(uid=3, refetch=True, parse_error="x")])
    assert index.incomplete(folder.id, 10) == ["1", "3"], "an answer that cannot be parsed is not asked again"
    healed = index.upsert(account_id, folder.id, "imap", [_meta(1)])
    assert [(r.uid, r.is_new) for r in healed] == [(1, False)]
    cr = conn.cursor()
    cr.execute("SELECT subject, message_id, parse_error, needs_refetch FROM maildesk_message_index WHERE uid = 1")
    assert cr.fetchone() == ("m1", "<m1@example.com>", None, False)
    for _attempt in range(3):
        index.refetch_failed(folder.id, ["3"], max_attempts=3)
    assert index.incomplete(folder.id, 10) == []
    cr.execute("SELECT parse_error, fetch_attempts FROM maildesk_message_index WHERE uid = 3")
    assert cr.fetchone() == ("x", 3), "the error stays visible to the admin"


def test_over_long_headers_are_bounded_for_their_indexes(pg_db):
    """A Message-ID or References of 10,000 characters must not fail the btree insert."""
    conn = pg_db()
    account_id = create_account(conn)
    folder = _folder(conn, account_id)
    index = MessageIndexRepository(conn.cursor())
    huge = "<" + "é" * 10_000 + "@x>"
    rows = index.upsert(account_id, folder.id, "imap", [
        MessageMeta(uid=1, message_id=huge, in_reply_to=huge, references=huge * 3, subject="s" * 50_000)])
    assert len(rows) == 1
    cr = conn.cursor()
    cr.execute("SELECT length(message_id), length(thread_key), length(references_header) FROM maildesk_message_index")
    message_id, thread, references = cr.fetchone()
    assert message_id <= 500 and thread <= 500 and references == len(huge) * 3
