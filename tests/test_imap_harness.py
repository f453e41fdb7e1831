"""The Dovecot harness itself: profiles are what they claim, seeding is fast and exact, nothing leaks."""

import os
import time

import pytest

from .harness.dovecot import DovecotServer, living_processes, seed_message


def test_the_basic_profile_really_hides_condstore_and_qresync(dovecot, dovecot_basic):
    assert {"CONDSTORE", "QRESYNC", "IDLE"} <= dovecot.effective_capabilities()
    basic = dovecot_basic.effective_capabilities()
    assert not {"CONDSTORE", "QRESYNC"} & basic
    assert {"IDLE", "UIDPLUS", "SPECIAL-USE", "ENABLE"} <= basic


def test_the_plain_profile_has_no_tls_and_no_special_use(dovecot_plain, imap_account):
    assert dovecot_plain.ssl_port is None
    client = imap_account(dovecot_plain).client()
    try:
        assert b"STARTTLS" not in client.capabilities() and b"SPECIAL-USE" not in client.capabilities()
        client.create_folder("Sent")
        assert client.list_folders(pattern="Sent") == [((b"\\HasNoChildren",), b"/", "Sent")]
    finally:
        client.logout()


def test_seeding_10000_messages_is_fast_and_deterministic(dovecot_basic, imap_account):
    account = imap_account(dovecot_basic)
    started = time.monotonic()
    dovecot_basic.seed(account, "Archive", 10_000)
    elapsed = time.monotonic() - started
    assert elapsed < 30, f"seeding 10,000 messages took {elapsed:.1f} s"
    client = account.client()
    try:
        assert client.select_folder("Archive", readonly=True)[b"EXISTS"] == 10_000
        fetched = client.fetch([1, 7777, 10_000], ["BODY.PEEK[]", "INTERNALDATE"])
    finally:
        client.logout()
    assert [fetched[uid][b"BODY[]"] for uid in (1, 7777, 10_000)] == [seed_message(n) for n in (1, 7777, 10_000)]
    assert fetched[10_000][b"INTERNALDATE"] > fetched[1][b"INTERNALDATE"]


def test_users_are_separate_and_passwords_checked(dovecot):
    first, second = dovecot.add_user(), dovecot.add_user()
    dovecot.seed(first, count=3)
    for account, count in ((first, 3), (second, 0)):
        client = dovecot.client(account.login)
        assert client.select_folder("INBOX")[b"EXISTS"] == count
        client.logout()
    with pytest.raises(ValueError):
        dovecot.add_user("bad:name")


def test_stop_kills_every_process_and_removes_the_files():
    server = DovecotServer().start()
    root, master = server.root, server._process.pid
    client = server.add_user().client()  # a live imap child process
    server.stop()
    assert not os.path.exists(root)
    assert living_processes(master) == []
    client.shutdown()
    server.stop()  # twice is harmless
