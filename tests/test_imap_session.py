"""The ImapSession port on real Dovecots, with CONDSTORE/QRESYNC and without them."""

import logging
import time

import pytest

from maildesk_mail_client.application.domain import ChangeSet, Flags
from maildesk_mail_client.application.errors import ConnectionFailed
from maildesk_mail_client.providers.imap.session import _uid_set

from .harness.sync_world import open_session


@pytest.fixture(params=["full", "basic"])
def profile(request):
    return request.param


@pytest.fixture
def server(profile, dovecot, dovecot_basic):
    return dovecot if profile == "full" else dovecot_basic


@pytest.fixture
def account(server, imap_account):
    account = imap_account(server)
    server.seed(account, "INBOX", 20)
    return account


@pytest.fixture
def session(account):
    session = open_session(account, timeout=5)
    yield session
    session.close()


@pytest.fixture
def imap_commands(caplog):
    """The commands the adapter sent, from imaplib's protocol log ("> ..." lines)."""
    caplog.set_level(logging.DEBUG, logger="imapclient")
    return lambda: " ".join(
        message for message in (r.getMessage() for r in caplog.records if r.name.startswith("imapclient"))
        if message.startswith("> "))


def other_client(account):
    client = account.client()
    client.select_folder("INBOX")
    return client


def test_capabilities_are_what_the_server_advertises(session, profile):
    extensions = {"CONDSTORE", "QRESYNC"} & session.capabilities
    assert extensions == ({"CONDSTORE", "QRESYNC"} if profile == "full" else set())
    assert {"IDLE", "UIDPLUS"} <= session.capabilities


def test_select_reports_the_folder_status(session, profile):
    status = session.select("INBOX")
    assert (status.exists, status.uidnext) == (20, 21)
    assert status.uidvalidity > 0
    if profile == "full":
        assert status.highest_modseq >= 1
    else:
        assert status.highest_modseq is None


def test_search_uids_ranges(session):
    session.select("INBOX")
    assert session.search_uids() == list(range(1, 21))
    assert session.search_uids(0, 3) == [1, 2, 3]
    assert session.search_uids(18) == [18, 19, 20]
    assert session.search_uids(50) == [], "UID SEARCH 50:* matches the highest UID; it is not above 50"
    assert session.search_uids(5, 4) == []
    assert session.search_uids(5, 5) == [5]


def test_fetch_flags_after_another_client_changed_them(session, account, profile):
    session.select("INBOX")
    client = other_client(account)
    client.add_flags([2, 3], [b"\\Seen"])
    client.add_flags([3], [b"\\Flagged", b"\\Answered"])
    client.logout()

    updates = {update.uid: update for update in session.fetch_flags(1, 4)}
    assert list(updates) == [1, 2, 3, 4]
    assert updates[2].flags == Flags(seen=True)
    assert updates[3].flags == Flags(seen=True, flagged=True, answered=True)
    assert (updates[1].modseq is not None) == (profile == "full")
    assert session.fetch_flags(30, 40) == [] and session.fetch_flags(4, 3) == []


def test_changes_since_with_condstore(dovecot, imap_account):
    account = imap_account(dovecot)
    dovecot.seed(account, "INBOX", 20)
    with open_session(account) as session:
        checkpoint = session.select("INBOX").highest_modseq
        client = other_client(account)
        client.add_flags([5, 15], [b"\\Seen"])
        client.logout()

        changes = session.fetch_changes_since(checkpoint, 1, 20)
        assert [(u.uid, u.flags.seen) for u in changes.updates] == [(5, True), (15, True)]
        assert all(u.modseq > checkpoint for u in changes.updates)
        assert [u.uid for u in session.fetch_changes_since(checkpoint, 1, 10).updates] == [5]
        assert session.select("INBOX").highest_modseq > checkpoint


@pytest.mark.parametrize("reselect", [False, True], ids=["while-selected", "after-reselect"])
def test_qresync_reports_vanished_uids(dovecot, imap_account, reselect):
    account = imap_account(dovecot)
    dovecot.seed(account, "INBOX", 20)
    with open_session(account) as session:
        checkpoint = session.select("INBOX").highest_modseq
        client = other_client(account)
        client.delete_messages([3, 4, 5, 9, 17])
        client.expunge()
        client.add_flags([10], [b"\\Flagged"])
        client.logout()
        if reselect:  # the expunges now come as VANISHED (EARLIER) of the FETCH
            session.select("INBOX")

        changes = session.fetch_changes_since(checkpoint, 1, 12)
        assert changes.vanished == {3, 4, 5, 9}, "clipped to the range asked for"
        assert [u.uid for u in changes.updates] == [10]
        # Reported once: the next call starts from what the server says then.
        assert session.fetch_changes_since(checkpoint, 1, 12).vanished <= {3, 4, 5, 9}


def test_without_condstore_no_changedsince_is_sent(dovecot_basic, imap_account, imap_commands):
    account = imap_account(dovecot_basic)
    dovecot_basic.seed(account, "INBOX", 6)
    with open_session(account) as session:
        session.select("INBOX")
        client = other_client(account)
        client.add_flags([2], [b"\\Seen"])
        client.delete_messages([4])
        client.expunge()
        client.logout()

        session.select("INBOX")
        changes = session.fetch_changes_since(1, 1, 6)
        assert isinstance(changes, ChangeSet) and changes.vanished == frozenset()
        assert [(u.uid, u.flags.seen, u.modseq) for u in changes.updates] == [
            (1, False, None), (2, True, None), (3, False, None), (5, False, None), (6, False, None)]
        session.fetch_flags(1, 6)
        session.fetch_metadata([1, 2])
    sent = imap_commands()
    assert "UID FETCH" in sent
    for word in ("CHANGEDSINCE", "VANISHED", "MODSEQ", "ENABLE", "CONDSTORE"):
        assert word not in sent


def test_a_dropped_connection_is_a_connection_failure(session, server, account):
    session.select("INBOX")
    server.kick(account)
    with pytest.raises(ConnectionFailed) as caught:
        session.search_uids()
    assert caught.value.kind == "network" and account.host in str(caught.value)
    session.close()
    session.close()


def test_a_server_that_stops_answering_is_a_timeout(dovecot, imap_account):
    account = imap_account(dovecot)
    session = open_session(account, timeout=0.3)
    session.select("INBOX")
    with dovecot.frozen(account):
        with pytest.raises(ConnectionFailed) as caught:
            session.search_uids()
        started = time.monotonic()
        session.close()
        assert time.monotonic() - started < 0.2, "no LOGOUT on a connection that stopped answering"
    assert caught.value.kind == "timeout" and "stopped answering" in str(caught.value)


def test_uid_sets_are_compact():
    assert _uid_set([1, 2, 3, 5, 7, 8, 10]) == "1:3,5,7:8,10"
    assert _uid_set([4]) == "4"
