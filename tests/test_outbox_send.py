"""The sender against a real SMTP server (the sink), a real Dovecot and a real PostgreSQL.

Every test ends on the sink's count: each Message-ID accepted exactly once
(0 lost, 0 sent twice), and the Sent folder and the index holding it once.
"""

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from .harness.send_world import TEST_SETTINGS, SendWorld
from .harness.smtp_sink import SmtpSink

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture
def sink():
    with SmtpSink() as server:
        yield server


def own_sink(imap_account, **options):
    """A sink that delivers each account's own address into its Dovecot mailbox (the proof)."""
    mailboxes = [imap_account() for _ in range(options.pop("accounts", 1))]
    local = {f"{m.login}@example.com": m for m in mailboxes}
    return SmtpSink(local=local, **options), mailboxes


def assert_exactly_once(world, ids=None):
    rows = world.rows()
    assert rows and all(row["state"] == "sent" for row in rows), [(r["state"], r["last_error"]) for r in rows]
    counts = world.sink.counts()
    for row in rows:
        assert counts[row["message_id"]] == 1, (row, counts[row["message_id"]])
    for account_id in world.accounts:
        sent = world.message_ids_in(account_id, "Sent")
        inbox = world.message_ids_in(account_id, "INBOX")
        indexed = world.indexed_sent(account_id)
        for row in (r for r in rows if r["account_id"] == account_id):
            assert sent.get(row["message_id"]) == 1, ("Sent copy", row)
            assert row["message_id"] not in inbox, ("own copy left in INBOX", row)
            assert row["sent_filed"] and indexed.get(row["message_id"]) == 1, ("index", row, indexed)


def test_sends_each_message_once_and_files_the_sent_copy(pg_db, imap_account):
    sink, mailboxes = own_sink(imap_account)
    with sink:
        world = SendWorld(pg_db, sink, mailboxes)
        account_id = next(iter(world.accounts))
        ids = world.queue(account_id, 3, bcc="carol@example.org")
        report = world.send(account_id)
        assert report.sent == 3 and report.failed == 0
        assert_exactly_once(world)
        received = sink.messages[0]
        assert "carol@example.org" in received.rcpt_tos and b"carol@example.org" not in received.data
        assert len(ids) == 3


def run_worker(spec, timeout=120):
    return subprocess.run([sys.executable, "-m", "tests.harness.send_worker", json.dumps(spec)], cwd=REPO,
                          capture_output=True, text=True, timeout=timeout)


KILL_SETTINGS = TEST_SETTINGS.__class__(backoff_base=0, proof_wait=1, lease_ttl=30)


@pytest.mark.parametrize("step", ["claimed", "handed_over", "accepted", "recorded", "filed"])
def test_kill_9_at_each_step_loses_nothing_and_sends_nothing_twice(pg_db, imap_account, step):
    """The second message's sender dies at ``step``; a new sender finishes: each message once at the sink."""
    sink, mailboxes = own_sink(imap_account)
    with sink:
        world = SendWorld(pg_db, sink, mailboxes, settings=KILL_SETTINGS)
        account_id = next(iter(world.accounts))
        world.queue(account_id, 3)
        result = run_worker(world.worker_spec(kill_at=step, kill_nth=2))
        assert result.returncode == -signal.SIGKILL, result.stderr[-3000:]
        states = [row["state"] for row in world.rows()]
        assert states[0] == "sent" and states[2] == "queued", states
        world.settle()
        assert_exactly_once(world)
        assert len(sink.messages) == 3


def test_random_kill_9_while_sending_many(pg_db, imap_account):
    """Kill -9 at random moments of a slow server, again and again: each message accepted exactly once."""
    import random

    sink, mailboxes = own_sink(imap_account, latency=0.02)
    rng = random.Random(7)
    with sink:
        world = SendWorld(pg_db, sink, mailboxes, settings=KILL_SETTINGS)
        account_id = next(iter(world.accounts))
        world.queue(account_id, 20)
        kills = 0
        for _round in range(40):
            if not any(row["state"] in ("queued", "sending") for row in world.rows()):
                break
            spec = json.dumps(world.worker_spec())
            proc = subprocess.Popen([sys.executable, "-m", "tests.harness.send_worker", spec],
                                    cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            time.sleep(rng.uniform(0.3, 1.2))
            if proc.poll() is None:
                proc.send_signal(signal.SIGKILL)
                kills += 1
            proc.wait()
            time.sleep(1.1)  # proof_wait: the own copy of an accepted message has arrived by then
        world.settle()
        assert kills >= 3
        assert_exactly_once(world)
        assert len(sink.messages) == 20


def test_two_workers_at_once(pg_db, imap_account):
    sink, mailboxes = own_sink(imap_account, accounts=2)
    with sink:
        world = SendWorld(pg_db, sink, mailboxes)
        for account_id in world.accounts:
            world.queue(account_id, 15)
        spec = json.dumps(world.worker_spec())
        procs = [subprocess.Popen([sys.executable, "-m", "tests.harness.send_worker", spec], cwd=REPO,
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)]
        for proc in procs:
            _out, err = proc.communicate(timeout=120)
            assert proc.returncode == 0, err[-3000:]
        assert_exactly_once(world)
        assert len(sink.messages) == 30


def test_4xx_at_rcpt_backs_off_then_sends(pg_db, imap_account):
    sink, mailboxes = own_sink(imap_account)
    with sink:
        world = SendWorld(pg_db, sink, mailboxes, settings=TEST_SETTINGS.__class__(backoff_base=1, proof_wait=0))
        account_id = next(iter(world.accounts))
        world.queue(account_id, 1)
        sink.refuse("rcpt", 450, address="bob@example.net")
        report = world.send(account_id)
        assert report.deferred == 1 and not sink.counts()
        row = world.rows()[0]
        assert row["state"] == "queued" and row["failure_kind"] == "temporary"
        assert "450" in row["last_error"] and "retry" in row["last_error"]
        assert world.send(account_id).sent == 0  # still backing off
        time.sleep(1.1)
        world.settle()
        assert_exactly_once(world)
        assert world.rows()[0]["attempts"] == 2


def test_4xx_after_data_backs_off_then_sends(pg_db, imap_account):
    sink, mailboxes = own_sink(imap_account)
    with sink:
        world = SendWorld(pg_db, sink, mailboxes)
        account_id = next(iter(world.accounts))
        world.queue(account_id, 1)
        sink.refuse("data", 451)
        world.settle()
        assert_exactly_once(world)


@pytest.mark.parametrize("stage, code, words", [("rcpt", 550, "refused the recipient"),
                                                ("data", 554, "did not accept"),
                                                ("data", 552, "too large"),
                                                ("mail", 553, "refused the sender")])
def test_5xx_fails_for_good_with_a_clear_message(pg_db, imap_account, stage, code, words):
    sink, mailboxes = own_sink(imap_account)
    with sink:
        world = SendWorld(pg_db, sink, mailboxes)
        account_id = next(iter(world.accounts))
        world.queue(account_id, 1)
        sink.refuse(stage, code, address="bob@example.net" if stage == "rcpt" else None)
        world.settle()
        row = world.rows()[0]
        assert row["state"] == "failed" and row["failure_kind"] == "permanent", row
        assert words in row["last_error"] and str(code) in row["last_error"], row["last_error"]
        assert not sink.counts()


def test_one_refused_recipient_sends_to_nobody(pg_db, imap_account):
    """All or none: a message never reaches part of its recipients and then fails."""
    sink, mailboxes = own_sink(imap_account)
    with sink:
        world = SendWorld(pg_db, sink, mailboxes)
        account_id = next(iter(world.accounts))
        world.queue(account_id, 1, to="bob@example.net, nobody@example.net")
        sink.refuse("rcpt", 550, address="nobody@example.net")
        world.settle()
        row = world.rows()[0]
        assert row["state"] == "failed" and "nobody@example.net" in row["last_error"]
        assert not sink.messages


def test_too_many_temporary_failures_give_up(pg_db, imap_account):
    sink, mailboxes = own_sink(imap_account)
    with sink:
        world = SendWorld(pg_db, sink, mailboxes)
        account_id = next(iter(world.accounts))
        world.queue(account_id, 1)
        sink.refuse("rcpt", 421, count=10)
        world.settle()
        row = world.rows()[0]
        assert row["state"] == "failed" and row["failure_kind"] == "temporary" and row["attempts"] == 5
        assert "Gave up after 5 attempts" in row["last_error"]


def test_auth_required_refused_and_lost(pg_db, imap_account):
    mailbox = imap_account()
    sink = SmtpSink(users={"alice": "right"}, local={f"{mailbox.login}@example.com": mailbox})
    with sink:
        world = SendWorld(pg_db, sink, [mailbox])
        account_id = next(iter(world.accounts))
        world.queue(account_id, 1)
        world.settle()  # no login at all
        row = world.rows()[0]
        assert row["state"] == "failed" and row["failure_kind"] == "permanent", row
        world.smtp_login[account_id] = ("alice", "right")
        world.conn.cursor().execute("UPDATE maildesk_outbox SET state = 'queued', attempts = 0")
        world.conn.commit()
        world.settle()
        assert_exactly_once(world)
        sink.users["alice"] = "changed"  # the password changed on the server: auth lost
        world.queue(account_id, 2)
        world.settle()
        lost = [row for row in world.rows() if row["state"] != "sent"]
        assert lost[0]["state"] == "failed" and lost[0]["failure_kind"] == "permanent"
        assert "rejected the SMTP login 'alice'" in lost[0]["last_error"] and "535" in lost[0]["last_error"]
        # One refused login, not one per message: the other rows fail with it, never tried.
        assert lost[1]["state"] == "failed" and lost[1]["attempts"] == 0
        assert lost[1]["last_error"] == lost[0]["last_error"]


def test_answer_lost_after_data_is_proven_not_resent(pg_db, imap_account):
    sink, mailboxes = own_sink(imap_account)
    with sink:
        world = SendWorld(pg_db, sink, mailboxes)
        account_id = next(iter(world.accounts))
        world.queue(account_id, 2)
        sink.drop_after_data()
        report = world.send(account_id)
        assert report.awaiting_proof == 1 and report.sent == 1
        world.settle()
        assert_exactly_once(world)


def test_no_proof_possible_ends_unknown_instead_of_resending(pg_db, imap_account):
    """Without the account's own address no copy comes back: a lost answer is the user's call."""
    sink, mailboxes = own_sink(imap_account)
    with sink:
        world = SendWorld(pg_db, sink, mailboxes)
        account_id = next(iter(world.accounts))
        plain = world.transport

        def without_own_address(account):
            transport = plain(account)
            transport.smtp = transport.smtp.__class__(**{**transport.smtp.__dict__, "own_address": ""})
            return transport

        world.ports.transports = without_own_address
        world.queue(account_id, 1)
        sink.drop_after_data()
        world.settle()
        row = world.rows()[0]
        assert row["state"] == "failed" and row["failure_kind"] == "unknown"
        assert "Retry or Discard" in row["last_error"] and "no email address" in row["last_error"]
        assert sink.count(row["message_id"]) == 1


def test_nothing_listening_defers(pg_db, imap_account):
    sink, mailboxes = own_sink(imap_account)
    with sink:
        world = SendWorld(pg_db, sink, mailboxes, settings=TEST_SETTINGS.__class__(backoff_base=60, proof_wait=0))
        account_id = next(iter(world.accounts))
        world.queue(account_id, 2)
    report = world.send(account_id)  # the sink is stopped
    rows = world.rows()
    assert report.deferred == 1 and rows[0]["state"] == "queued" and "refused the connection" in rows[0]["last_error"]
    assert rows[1]["attempts"] == 0  # the account stopped at the first failure
