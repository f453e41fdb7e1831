"""The IMAP sync engine end to end: real Dovecot, real PostgreSQL, production code.

Every scenario ends on the same check: the index equals the server's set
of UIDs and flags, exactly, with no delivery key doubled.
"""

import dataclasses
import datetime as dt
import os
import threading
from email.message import EmailMessage

import pytest

from maildesk_mail_client.application.ports import SyncSettings

from .harness.sync_world import SyncWorld

SMALL = SyncSettings(first_chunk=50, chunk=40, bootstrap_limit=120)


def message(number, subject=None, **headers):
    msg = EmailMessage()
    msg["From"] = f"Sender {number} <s{number}@example.com>"
    msg["To"] = "me@example.com"
    msg["Subject"] = subject or f"Message {number}"
    msg["Message-ID"] = f"<m{number}@maildesk.test>"
    msg["Date"] = (dt.datetime(2024, 5, 1, tzinfo=dt.timezone.utc) + dt.timedelta(minutes=number)).strftime(
        "%a, %d %b %Y %H:%M:%S +0000")
    for name, value in headers.items():
        msg[name.replace("_", "-")] = value
    msg.set_content(f"Hello {number}")
    return msg.as_bytes()


def seed(mailbox, count, folder="INBOX", start=1):
    client = mailbox.client()
    try:
        if folder != "INBOX" and not client.folder_exists(folder):
            client.create_folder(folder)
        for number in range(start, start + count):
            client.append(folder, message(number))
    finally:
        client.logout()


@pytest.fixture(params=["full", "basic"])
def mailbox(request, imap_account, dovecot, dovecot_basic):
    """A fresh mailbox on Dovecot with CONDSTORE/QRESYNC, and on one that hides them."""
    return imap_account(dovecot if request.param == "full" else dovecot_basic)


@pytest.fixture
def world(pg_db, mailbox):
    return SyncWorld(pg_db, mailbox, SMALL)


def other_client(mailbox, folder="INBOX"):
    client = mailbox.client()
    client.select_folder(folder)
    return client


def test_first_pass_shows_the_newest_50_of_inbox(world):
    seed(world.mailbox, 130)
    report = world.bootstrap_once()
    index = world.index()
    assert len(index) == 50
    assert sorted(index) == sorted(world.server())[-50:]
    assert report.remaining >= 1
    assert len(world.ctx.notifier.reports) == 1 and world.ctx.notifier.reports[0]["new"] == 50
    assert [call[-1] for call in world.ctx.hooks.calls] == [True] * 50


def test_bootstrap_to_the_bound_then_backfill_the_rest(world):
    seed(world.mailbox, 300)
    world.bootstrap_all()
    inbox = world.folders()["INBOX"]
    assert len(world.index()) == SMALL.bootstrap_limit
    assert (inbox.sync_state, inbox.backfill_state) == ("incremental", "pending")
    visited, indexed, pending = world.backfill_all()
    assert (indexed, pending) == (300 - SMALL.bootstrap_limit, 0)
    assert world.assert_index_matches_server() == 300
    assert world.folders()["INBOX"].backfill_state == "done"
    hooks = world.ctx.hooks.calls
    assert len(hooks) == 300 and all(is_new for *_rest, is_new in hooks)


def test_incremental_new_mail_flag_changes_and_expunge(world):
    seed(world.mailbox, 60)
    world.full_sync()
    world.ctx.hooks.calls.clear()
    world.ctx.notifier.reports.clear()

    client = other_client(world.mailbox)
    uids = sorted(client.search("ALL"))
    client.add_flags(uids[:3], [b"\\Seen"])
    client.add_flags(uids[10:12], [b"\\Flagged", b"\\Answered"])
    client.delete_messages(uids[20:25])
    client.expunge()
    client.append("INBOX", message(1000))
    client.logout()

    report = world.sync()
    assert world.assert_index_matches_server() == 56
    assert (report.new, report.updated, report.removed) == (1, 5, 5)
    assert len(world.ctx.notifier.reports) == 1
    assert sorted(world.ctx.hooks.calls[i][-1] for i in range(6)) == [False] * 5 + [True]

    # Nothing changed on the server: nothing is written, nobody is notified.
    world.ctx.notifier.reports.clear()
    report = world.sync()
    assert (report.new, report.updated, report.removed) == (0, 0, 0)
    assert world.ctx.notifier.reports == []


def test_flag_removal_is_seen(world):
    seed(world.mailbox, 5)
    client = other_client(world.mailbox)
    client.add_flags(client.search("ALL"), [b"\\Seen", b"\\Flagged"])
    world.full_sync()
    client.remove_flags(client.search("ALL")[:2], [b"\\Seen"])
    client.logout()
    world.sync()
    assert world.assert_index_matches_server() == 5
    assert sum(1 for flags in world.index().values() if not flags[0]) == 2


def test_move_between_folders(world):
    seed(world.mailbox, 10)
    seed(world.mailbox, 2, folder="Archive", start=100)
    world.full_sync()
    client = other_client(world.mailbox)
    moving = sorted(client.search("ALL"))[:3]
    if b"MOVE" in client.capabilities():
        client.move(moving, "Archive")
    else:
        client.copy(moving, "Archive")
        client.delete_messages(moving)
        client.expunge()
    client.logout()

    world.sync()
    assert world.assert_index_matches_server("INBOX") == 7
    assert world.assert_index_matches_server("Archive") == 5
    subjects = {row["subject"] for row in world.rows("Archive")}
    assert {"Message 1", "Message 2", "Message 3"} <= subjects


def test_uidvalidity_change_reindexes_the_folder(world):
    seed(world.mailbox, 8, folder="Projects")
    world.full_sync()
    old = world.folders()["Projects"]
    client = world.mailbox.client()
    client.delete_folder("Projects")
    client.create_folder("Projects")
    client.logout()
    seed(world.mailbox, 3, folder="Projects", start=50)

    world.sync()  # sees the new UIDVALIDITY, drops the folder's rows
    assert world.index("Projects") == {}
    world.full_sync()
    assert world.folders()["Projects"].uidvalidity != old.uidvalidity
    assert world.assert_index_matches_server("Projects") == 3
    assert {row["subject"] for row in world.rows("Projects")} == {"Message 50", "Message 51", "Message 52"}


def test_folders_created_renamed_and_deleted_on_the_server(world):
    seed(world.mailbox, 4, folder="Clients")
    seed(world.mailbox, 2, folder="Old")
    world.full_sync()
    row_ids = {row["id"] for row in world.rows("Clients")}
    client = world.mailbox.client()
    client.rename_folder("Clients", "Customers")
    client.delete_folder("Old")
    client.create_folder("Brand new")
    client.logout()

    world.sync()
    folders = world.folders()
    assert "Clients" not in folders and "Old" not in folders
    assert {"Customers", "Brand new"} <= set(folders)
    # A rename keeps the index: same rows, no re-download.
    assert {row["id"] for row in world.rows("Customers")} == row_ids
    assert world.assert_index_matches_server("Customers") == 4
    cr = world.conn.cursor()
    cr.execute("SELECT count(*) FROM maildesk_message_index WHERE subject = 'Message 1' AND folder_id NOT IN "
               "(SELECT id FROM maildesk_folder)")
    assert cr.fetchone()[0] == 0


def test_highest_modseq_going_backwards_falls_back_to_a_full_scan(pg_db, imap_account, dovecot):
    world = SyncWorld(pg_db, imap_account(dovecot), SMALL)
    seed(world.mailbox, 12)
    world.full_sync()
    # The server lost its mod-sequences (restored backup): ours is now ahead of it.
    inbox = world.folders()["INBOX"]
    inbox.highest_modseq += 1000
    world.ctx.folders.save_cursors(inbox)
    world.conn.commit()
    client = other_client(world.mailbox)
    client.add_flags(client.search("ALL")[:4], [b"\\Seen"])
    client.logout()

    world.sync()
    assert world.assert_index_matches_server() == 12
    assert world.folders()["INBOX"].highest_modseq < inbox.highest_modseq


def test_two_concurrent_workers_never_double(world):
    seed(world.mailbox, 200)
    seed(world.mailbox, 30, folder="Sent", start=500)
    second = world.sibling("worker-2")
    barrier = threading.Barrier(2)
    errors = []

    def work(w):
        try:
            barrier.wait()
            for _ in range(10):
                w.bootstrap_once()
                w.sync()
            w.backfill_all()
        except Exception as error:  # surfaced below
            errors.append(error)

    threads = [threading.Thread(target=work, args=(w,)) for w in (world, second)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    world.full_sync()
    assert world.assert_index_matches_server() == 200
    assert world.assert_index_matches_server("Sent") == 30
    new_hooks = [call for call in world.ctx.hooks.calls + second.ctx.hooks.calls if call[-1]]
    assert len(new_hooks) == 230, "each message is new exactly once across both workers"


def test_a_held_lease_keeps_a_second_worker_out(world):
    seed(world.mailbox, 3)
    assert world.ctx.leases.acquire(world.account_id, "sync", "someone-else", 60)
    assert world.sync() is None
    assert world.index() == {}


def test_bad_password_needs_reconnect_and_network_errors_back_off(pg_db, imap_account, dovecot):
    mailbox = imap_account(dovecot)
    world = SyncWorld(pg_db, dataclasses.replace(mailbox, password="nope"), SMALL)
    assert world.sync() is not None
    cr = world.conn.cursor()
    cr.execute("SELECT auth_state, last_error FROM mailbox_account WHERE id = %s", [world.account_id])
    state, error = cr.fetchone()
    assert state == "reconnect_needed" and mailbox.login in error
    assert world.ctx.accounts.due_for_sync("imap") == []

    dead = dataclasses.replace(mailbox, port=1)
    world2 = SyncWorld(pg_db, dead, SMALL)
    world2.sync()
    world2.sync()  # backoff is the cron's to honour; the count keeps climbing
    cr = world2.conn.cursor()
    cr.execute("SELECT failure_count, backoff_until, last_error FROM mailbox_account WHERE id = %s",
               [world2.account_id])
    failures, until, error = cr.fetchone()
    assert failures == 2 and until > dt.datetime.now(dt.timezone.utc).replace(tzinfo=None) + dt.timedelta(seconds=90)
    assert "refused" in error.lower()


def test_incremental_leaves_history_to_bootstrap_when_nothing_is_indexed_yet(world):
    seed(world.mailbox, 90)
    # A bootstrap that pinned the top of INBOX and stopped before its first chunk.
    world.ctx.settings = dataclasses.replace(SMALL, first_chunk=1)
    world.bootstrap_once()
    inbox = world.folders()["INBOX"]
    inbox.low_uid = 0
    inbox.bootstrap_indexed = 0
    world.ctx.folders.save_cursors(inbox)
    world.ctx.index.purge_folder(inbox.id)
    world.conn.commit()

    seed(world.mailbox, 1, start=500)  # new mail: no "unchanged" shortcut on CONDSTORE servers

    world.sync()
    assert len(world.index()) == 1, "incremental sync takes the new mail, not the history"
    world.ctx.settings = SMALL
    world.full_sync()
    assert world.assert_index_matches_server() == 91


def test_folder_empty_at_connect_gets_flag_and_expunge_sync(world):
    world.full_sync()  # INBOX is empty: nothing to index, the folder goes incremental
    seed(world.mailbox, 6)
    world.sync()
    assert world.assert_index_matches_server() == 6
    client = other_client(world.mailbox)
    uids = sorted(client.search("ALL"))
    client.add_flags(uids[:2], [b"\\Seen"])
    client.delete_messages(uids[-1:])
    client.expunge()
    client.logout()
    world.sync()
    assert world.assert_index_matches_server() == 5


def test_a_folder_the_server_refuses_does_not_stop_the_others(pg_db, imap_account, dovecot):
    mailbox = imap_account(dovecot)
    seed(mailbox, 3, folder="Broken")
    seed(mailbox, 4, folder="Zebra")
    world = SyncWorld(pg_db, mailbox, SMALL)
    broken = os.path.join(dovecot.root, "mail", mailbox.login, "mail", "mailboxes", "Broken", "dbox-Mails")
    assert os.path.isdir(broken), "the harness's sdbox layout changed"
    os.chmod(broken, 0)  # Dovecot still lists the folder, but SELECT fails: NO [SERVERBUG]
    try:
        world.full_sync()
        seed(mailbox, 2, folder="INBOX")
        world.sync()
    finally:
        os.chmod(broken, 0o755)
    assert world.assert_index_matches_server("INBOX") == 2
    assert world.assert_index_matches_server("Zebra") == 4
    cr = world.conn.cursor()
    cr.execute("SELECT last_error FROM maildesk_folder WHERE account_id = %s AND path = 'Broken'", [world.account_id])
    assert cr.fetchone()[0], "the refusal is recorded on the folder"
    cr.execute("SELECT auth_state, failure_count FROM mailbox_account WHERE id = %s", [world.account_id])
    assert cr.fetchone() == ("ok", 0), "one bad folder is not the account's failure"
    world.conn.commit()
    world.full_sync()
    assert world.assert_index_matches_server("Broken") == 3
