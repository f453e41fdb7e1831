"""Opening a message (use_cases/read_message.py) against a real Dovecot and a real PostgreSQL.

The mailbox is indexed by the real engine; the body comes through the real
IMAP adapter (``fetch_raw``, counted by a thin wrapper); the cache is the
real ``maildesk_ui_cache`` SQL with its advisory lock, each request on its
own PostgreSQL connection.
"""

import datetime as dt

import pytest

from maildesk_mail_client.application.message_view import open_part, part_bytes
from maildesk_mail_client.application.use_cases.read_message import MessageGone, ReadSettings, open_message
from maildesk_mail_client.repositories.ui_cache import UiCacheRepository

from .harness.read_world import ReadWorld, cid_url, html_message


@pytest.fixture
def world(pg_db, imap_account):
    return ReadWorld(pg_db, imap_account())


def test_ten_concurrent_opens_fetch_from_the_server_once(world):
    world.append(html_message())
    (index_id,) = world.index_rows().values()
    world.fetch_delay = 0.3  # the first fetch holds the lock a while: the nine others wait on it
    results = world.open_concurrently(index_id, count=10)
    assert world.fetches == 1
    assert sum(result.fetched for result in results) == 1
    assert len({result.body.html for result in results}) == 1
    assert all(result.body.remote_blocked == 1 for result in results)  # the tracking pixel
    assert len(world.cached_rows()) == 1

    # and a later open is served from the cache
    assert world.open(index_id).fetched is False
    assert world.fetches == 1


def test_without_the_lock_the_same_opens_all_fetch(world):
    """What the advisory lock prevents: the same ten opens, the lock left out, all go to the server."""
    world.append(html_message())
    (index_id,) = world.index_rows().values()
    world.fetch_delay = 0.3
    world.lock_fill = False
    world.open_concurrently(index_id, count=10)
    assert world.fetches == 10


def test_opened_body_is_parsed_sanitized_and_cached(world):
    raw = html_message(subject="Quarterly news")
    world.append(raw)
    (index_id,) = world.index_rows().values()
    opened = world.open(index_id, with_raw=True)
    body = opened.body
    assert opened.fetched and opened.cached
    assert body.headers["subject"] == "Quarterly news"
    assert body.headers["from"] == "News <news@example.com>"
    assert body.headers["date"] == "2024-05-14 09:30:00"
    assert f'src="/maildesk/message/{index_id}/cid/logo@maildesk.test"' in body.html
    assert "tracker.example" not in body.html and body.remote_blocked == 1
    assert "http://tracker.example/open.gif" in body.html_remote
    assert body.text.startswith("Lorem ipsum") and body.text_html.startswith("<div")
    parts = {part["part_id"]: part for part in body.attachments}
    assert parts["1.2.2"]["referenced"] is True and parts["1.2.2"]["content_id"] == "logo@maildesk.test"
    assert parts["2"]["filename"] == "report.pdf" and parts["2"]["referenced"] is False
    assert parts["2"]["size"] == len(b"report " * 200)
    # the bytes are the server's: a part comes out of them as sent
    assert part_bytes(body.raw, "2")[2] == b"report " * 200

    cached = world.open(index_id, with_raw=True)
    assert not cached.fetched
    assert cached.body.raw == body.raw and cached.body.html == body.html
    assert cached.body.attachments == body.attachments
    ((row_index, row_account, row_size, ttl),) = world.cached_rows()
    assert (row_index, row_account, row_size) == (index_id, world.sync.account_id, len(body.raw))
    assert ttl == dt.timedelta(hours=72)


def test_opening_does_not_mark_the_message_read(world):
    world.append(html_message())
    (index_id,) = world.index_rows().values()
    world.open(index_id)
    client = world.mailbox.client()
    try:
        client.select_folder("INBOX", readonly=True)
        (flags,) = client.get_flags(client.search("ALL")).values()
    finally:
        client.logout()
    assert b"\\Seen" not in flags


def test_expired_entries_are_fetched_again_and_purged(world):
    world.settings = ReadSettings(ttl_hours=1)
    world.append(html_message())
    (index_id,) = world.index_rows().values()
    world.open(index_id)
    world.clock.shift = dt.timedelta(minutes=59)
    assert world.open(index_id).fetched is False
    world.clock.shift = dt.timedelta(minutes=61)
    assert world.open(index_id).fetched is True  # expired: the server again, and the row renewed
    assert world.fetches == 2
    assert len(world.cached_rows()) == 1

    conn = world.connect()
    cache = UiCacheRepository(conn.cursor())
    assert cache.purge_expired(world.clock.now()) == 0
    assert cache.purge_expired(world.clock.now() + dt.timedelta(hours=2)) == 1
    conn.commit()
    assert world.cached_rows() == []


def test_a_message_over_the_size_cap_is_never_cached(world):
    raw = html_message(size=60_000)
    world.settings = ReadSettings(max_bytes=50_000)
    world.append(raw)
    world.append(html_message(size=20_000, message_id="<small@maildesk.test>"))
    big, small = world.index_rows().values()
    first = world.open(big, with_raw=True)
    assert first.fetched and not first.cached and first.body.raw and first.body.html
    again = world.open(big)
    assert again.fetched and not again.cached
    assert world.open(small).cached
    assert world.fetches == 3
    assert [row[0] for row in world.cached_rows()] == [small]

    # serving one of its parts, the big one is fetched but not parsed (nothing to keep it for)
    conn = world.connect()
    try:
        bare = open_message(world.ports(conn), world.location(big), cid_url(big), with_raw=True, rendered=False)
    finally:
        conn.close()
    assert bare.fetched and bare.body.raw == raw and bare.body.attachments is None and bare.body.html is None
    assert open_part(bare.body.raw, "2").filename == "report.pdf"
    assert world.fetches == 4

    # the index knew the size already: the big one is fetched without the lock; a message
    # whose indexed size is wrong (or unknown) is found too big once fetched, and not stored
    cr = world.sync.conn.cursor()
    cr.execute("UPDATE maildesk_message_index SET size = NULL WHERE id = %s", [big])
    world.sync.conn.commit()
    assert world.open(big).cached is False
    assert [row[0] for row in world.cached_rows()] == [small]


def test_a_message_gone_from_the_server(world):
    world.append(html_message())
    (index_id,) = world.index_rows().values()
    client = world.mailbox.client()
    try:
        client.select_folder("INBOX")
        client.delete_messages(client.search("ALL"))
        client.expunge()
    finally:
        client.logout()
    with pytest.raises(MessageGone):
        world.open(index_id)
    assert world.cached_rows() == []


def test_the_cache_row_takes_the_index_rows_account(world):
    world.append(html_message())
    (index_id,) = world.index_rows().values()
    world.open(index_id)
    cr = world.sync.conn.cursor()
    cr.execute("SELECT c.account_id = i.account_id FROM maildesk_ui_cache c "
               "JOIN maildesk_message_index i ON i.id = c.index_id")
    assert cr.fetchone() == (True,)
    world.sync.conn.commit()


def test_the_cache_keeps_the_newest_bodies_under_its_total_size(world):
    for number in range(4):
        world.append(html_message(size=20_000, message_id=f"<evict-{number}@maildesk.test>"))
    ids = sorted(world.index_rows().values())
    for minutes, index_id in enumerate(ids):  # opened (fetched) in this order, a minute apart
        world.clock.shift = dt.timedelta(minutes=minutes)
        world.open(index_id)
    sizes = {row[0]: row[2] for row in world.cached_rows()}
    assert set(sizes) == set(ids)

    conn = world.connect()
    cache = UiCacheRepository(conn.cursor())
    assert cache.evict_over(sum(sizes.values())) == 0  # all fit
    room = sizes[ids[3]] + sizes[ids[2]] + sizes[ids[1]] - 1  # one byte short of the three newest
    assert cache.evict_over(room) == 2  # the two oldest fetched go
    conn.commit()
    assert sorted(row[0] for row in world.cached_rows()) == ids[2:]
    assert cache.evict_over(0) == 2
    conn.commit()
    assert world.cached_rows() == []
