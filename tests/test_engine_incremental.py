"""Incremental sync that holds: races at REPEATABLE READ, folders that only look renamed,
passes that stop on time and resume, and the periodic reconciliation that heals the index.

Issue 6, defects 2, 4, 5 and 8. Real Dovecot, real PostgreSQL at REPEATABLE READ.
"""

import datetime as dt
import threading
import time

import pytest

from maildesk_mail_client.application.ports import SyncSettings
from maildesk_mail_client.application.use_cases import bootstrap_account, sync_account
from maildesk_mail_client.repositories import FolderRepository

from .conftest import start_dovecot
from .harness.sync_world import SyncWorld
from .test_sync_engine import seed


def _folder(world, path):
    return world.folders()[path]


def _account_state(world):
    cr = world.conn.cursor()
    cr.execute("SELECT failure_count, last_error, auth_state FROM mailbox_account WHERE id = %s",
               [world.account_id])
    row = cr.fetchone()
    world.conn.commit()
    return row


def test_a_row_changed_by_another_transaction_means_retry_not_failure(pg_db, imap_account, dovecot):
    """Defect 2: a REPEATABLE READ conflict in the middle of a run is "try again", never a failed job."""
    world = SyncWorld(pg_db, imap_account(dovecot), SyncSettings(chunk=20))
    seed(world.mailbox, 30)
    world.full_sync()
    inbox = _folder(world, "INBOX")
    seed(world.mailbox, 10, start=100)
    other = pg_db()

    class ConcurrentTouch:
        """While the run holds a snapshot, another worker's checkpoint commits on the same folder."""

        def __init__(self):
            self.fired = False

        def after_upsert(self, account_id, folder_id, rows):
            if not self.fired:
                self.fired = True
                FolderRepository(other.cursor()).touch(inbox.id)
                other.commit()

    world.ctx.hooks = ConcurrentTouch()
    report = world.sync()
    assert world.ctx.hooks.fired
    assert report is not None and report.remaining >= 1, "the run says there is more to do"
    assert _account_state(world) == (0, None, "ok"), "no failure recorded, no backoff"
    world.ctx.hooks = type("Quiet", (), {"after_upsert": lambda *args: None})()
    world.sync()
    assert world.assert_index_matches_server() == 40


def test_bootstrap_and_sync_triggered_together_never_fail(pg_db, imap_account, dovecot):
    """Defect 2: create() and "Sync now" wake two crons at once on the same account."""
    world = SyncWorld(pg_db, imap_account(dovecot), SyncSettings(chunk=50, first_chunk=20))
    seed(world.mailbox, 200)
    workers = [world.sibling(f"w{n}") for n in range(4)]
    errors = []

    def run(worker, use_case):
        try:
            for _ in range(15):
                use_case(worker.ctx, world.account_id, time.monotonic() + 30)
        except Exception as error:  # a failed job is what this test is about
            errors.append(error)

    threads = [threading.Thread(target=run, args=(w, bootstrap_account if n % 2 else sync_account))
               for n, w in enumerate(workers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    world.full_sync()
    assert world.assert_index_matches_server() == 200
    assert _account_state(world)[0] == 0


def test_a_new_folder_with_the_old_ones_uidvalidity_is_not_a_rename(pg_db, imap_account, dovecot):
    """Defect 4: delete "Old", create "New" with the same UIDVALIDITY: New must not show Old's mail."""
    world = SyncWorld(pg_db, imap_account(dovecot))
    seed(world.mailbox, 3, folder="Old")
    world.full_sync()
    client = world.mailbox.client()
    client.delete_folder("Old")
    client.create_folder("New")
    client.append("New", b"Subject: fresh\r\nMessage-ID: <fresh@x>\r\n\r\nhi\r\n")
    new_uidvalidity = client.folder_status("New", [b"UIDVALIDITY"])[b"UIDVALIDITY"]
    client.logout()
    # Dovecot derives UIDVALIDITY from the clock: within one second the two folders share it.
    cr = world.conn.cursor()
    cr.execute("UPDATE maildesk_folder SET uidvalidity = %s WHERE account_id = %s AND path = 'Old'",
               [new_uidvalidity, world.account_id])
    world.conn.commit()

    world.full_sync()
    folders = world.folders()
    assert "Old" not in folders and "New" in folders
    assert [row["subject"] for row in world.rows("New")] == ["fresh"]
    cr.execute("SELECT count(*) FROM maildesk_message_index WHERE subject LIKE 'Message %%'")
    assert cr.fetchone()[0] == 0, "Old's messages went with Old"
    world.conn.commit()


def test_a_real_rename_keeps_the_index(pg_db, imap_account, dovecot):
    """Defect 4, the other side: a rename proven by UIDVALIDITY, UIDNEXT, count and newest message."""
    world = SyncWorld(pg_db, imap_account(dovecot))
    seed(world.mailbox, 5, folder="Clients")
    world.full_sync()
    ids = {row["id"] for row in world.rows("Clients")}
    client = world.mailbox.client()
    client.rename_folder("Clients", "Customers")
    client.logout()
    world.sync()
    assert {row["id"] for row in world.rows("Customers")} == ids
    assert "Clients" not in world.folders()


def test_a_backlog_of_new_mail_is_indexed_under_the_budget_and_resumes(pg_db, imap_account, dovecot):
    """Defect 5: 2,000 new messages do not make one pass overrun its deadline."""
    world = SyncWorld(pg_db, imap_account(dovecot), SyncSettings(chunk=100))
    seed(world.mailbox, 5)
    world.full_sync()
    dovecot.seed(world.mailbox, count=2000, start=1000)
    tops = []
    for _ in range(40):
        # An expired deadline: each call does one delta (INBOX always gets its pass), then stops.
        report = sync_account(world.ctx, world.account_id, time.monotonic())
        tops.append(_folder(world, "INBOX").last_uid)
        if not report.remaining:
            break
    assert len(tops) > 5, "the backlog took several calls"
    assert tops == sorted(tops), "each call resumed where the last one stopped"
    assert world.assert_index_matches_server() == 2005


def test_a_flag_scan_without_condstore_is_budgeted_and_resumable(pg_db, imap_account, dovecot_basic):
    """Defect 5: without CONDSTORE the flag scan checkpoints as it goes and resumes at its cursor."""
    world = SyncWorld(pg_db, imap_account(dovecot_basic), SyncSettings(chunk=200, flag_scan_chunk=100,
                                                                      bootstrap_limit=5000))
    dovecot_basic.seed(world.mailbox, count=1000)
    world.full_sync()
    client = world.mailbox.client()
    client.select_folder("INBOX")
    client.add_flags([7, 999], [b"\\Flagged"])
    client.logout()
    cursors = []
    for _ in range(30):
        sync_account(world.ctx, world.account_id, time.monotonic())
        cursors.append(_folder(world, "INBOX").reconcile_cursor)
        if cursors[-1] is None:
            break
    assert len(cursors) >= 10 and cursors[-1] is None, "1,000 messages in windows of 100: ten calls at least"
    progress = [int(c) for c in cursors if c is not None]
    assert progress == sorted(progress), "the scan never starts over"
    assert world.assert_index_matches_server() == 1000


def test_reconciliation_heals_what_the_fast_path_cannot_see(pg_db, imap_account, dovecot):
    """Defect 8: QRESYNC never diffs; a periodic reconciliation puts wrong rows right."""
    world = SyncWorld(pg_db, imap_account(dovecot), SyncSettings(reconcile_interval=3600))
    seed(world.mailbox, 20)
    world.full_sync()
    cr = world.conn.cursor()
    # What a lost mod-sequence or a bug could leave behind: a live message marked deleted,
    # a wrong flag, a message missing from the index.
    cr.execute("UPDATE maildesk_message_index SET deleted_on_server = true WHERE uid = 3")
    cr.execute("UPDATE maildesk_message_index SET is_seen = NOT is_seen WHERE uid = 5")
    cr.execute("DELETE FROM maildesk_message_index WHERE uid = 8")
    world.conn.commit()
    world.sync()
    assert len(world.index()) == 18, "the fast path (nothing changed on the server) cannot see it"

    cr.execute("UPDATE maildesk_folder SET reconciled_at = %s WHERE account_id = %s",
               [dt.datetime(2020, 1, 1), world.account_id])
    world.conn.commit()
    world.sync()
    assert world.assert_index_matches_server() == 20
    assert _folder(world, "INBOX").reconciled_at > dt.datetime(2025, 1, 1)


@pytest.fixture(scope="module")
def dovecot_condstore(dovecot):
    """Dovecot offering CONDSTORE without QRESYNC (as Gmail does): expunges are not reported."""
    offered = " ".join(sorted(dovecot.effective_capabilities() - {"QRESYNC"}))
    server = start_dovecot(capabilities=offered)
    yield server
    server.stop()


def test_condstore_without_qresync_sees_expunges_by_counting(pg_db, imap_account, dovecot_condstore):
    """No VANISHED: an expunge shows as EXISTS not growing by what arrived; then a diff finds it."""
    world = SyncWorld(pg_db, imap_account(dovecot_condstore), SyncSettings(flag_scan_chunk=50))
    seed(world.mailbox, 120)
    world.full_sync()
    client = world.mailbox.client()
    client.select_folder("INBOX")
    client.delete_messages([7, 90])
    client.expunge()
    client.logout()
    seed(world.mailbox, 3, start=500)  # arrivals in the same pass must not hide the expunges
    world.sync()
    assert world.assert_index_matches_server() == 121
    # And a pass with nothing expunged does not start a reconciliation.
    seed(world.mailbox, 2, start=600)
    world.sync()
    assert _folder(world, "INBOX").reconcile_cursor is None
    assert world.assert_index_matches_server() == 123
