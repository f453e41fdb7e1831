"""The sender for Gmail (messages.send) and Outlook (Graph draft + send), against the local Gmail and Graph.

Every test ends on the fake server's own record of sends: each Message-ID
sent exactly once (0 lost, 0 sent twice), the Sent row indexed once, and
no stray draft left in Outlook's Drafts.
"""

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from .harness.gmail_server import GmailServer
from .harness.graph_server import GraphServer
from .harness.send_oauth import OAuthSendWorld
from .harness.send_world import TEST_SETTINGS

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
KINDS = ["gmail", "outlook"]
#: the send route of each fake, for fail_next / slow_next
SEND = {"gmail": "gmail.users.messages.send", "outlook": r"/me/messages/[^/]+/send$"}


@pytest.fixture(scope="module")
def servers():
    with GmailServer() as gmail, GraphServer() as graph:
        yield {"gmail": gmail, "outlook": graph}


@pytest.fixture
def server(servers, request):
    """A fresh mailbox on the module's server (a new world per test)."""
    kind = request.param
    live = servers[kind]
    if kind == "gmail":
        from .harness.gmail_world import GmailWorld

        live._httpd.world = live.world = GmailWorld()
    else:
        from .harness.graph_world import GraphWorld

        live.world = GraphWorld()
    return kind, live


def world_for(pg_db, server, settings=TEST_SETTINGS, **options):
    kind, live = server
    return OAuthSendWorld(kind, pg_db, live, settings, **options)


def fail_send(world, status, **options):
    if world.kind == "gmail":
        world.server.world.fail_next(SEND["gmail"], status, **options)
    else:
        world.server.world.fail_next(SEND["outlook"], status, **options)


BOTH = pytest.mark.parametrize("server", KINDS, indirect=True)
GMAIL = pytest.mark.parametrize("server", ["gmail"], indirect=True)
OUTLOOK = pytest.mark.parametrize("server", ["outlook"], indirect=True)


@BOTH
def test_sends_once_indexes_the_sent_copy_at_once_and_the_sync_does_not_double_it(pg_db, server):
    world = world_for(pg_db, server)
    world.queue(2)
    world.queue(1, bcc="carol@example.org")
    report = world.send()
    assert report.sent == 3 and report.failed == 0 and report.awaiting_proof == 0
    world.assert_exactly_once()  # the Sent rows are there before any sync
    rows = world.rows()
    assert all(row["sent_remote_id"] for row in rows)
    raw = world.sent_raw(rows[2]["message_id"])
    assert b"Bcc: carol@example.org" in raw  # the API delivers to Bcc from the header, and strips it
    assert b"Bcc:" not in world.sent_raw(rows[0]["message_id"])
    if world.kind == "gmail":
        assert world.indexed("all") == {row["message_id"]: 1 for row in rows}
    world.sync()
    world.sync()
    world.assert_exactly_once()
    if world.kind == "gmail":
        world.sync_world.assert_matches(world.server.world)
    else:
        world.sync_world.assert_index_matches_server()


KILL_SETTINGS = TEST_SETTINGS.__class__(backoff_base=0, proof_wait=1, lease_ttl=30)


def run_worker(spec, timeout=120):
    return subprocess.run([sys.executable, "-m", "tests.harness.send_oauth", json.dumps(spec)], cwd=REPO,
                          capture_output=True, text=True, timeout=timeout)


@BOTH
@pytest.mark.parametrize("step", ["claimed", "created", "accepted", "recorded", "filed"])
def test_kill_9_at_each_step_loses_nothing_and_sends_nothing_twice(pg_db, server, step):
    """The second message's sender dies at ``step``; a new sender finishes: each message sent once."""
    world = world_for(pg_db, server, KILL_SETTINGS)
    if step == "created" and world.kind == "gmail":
        step = "claimed"  # Gmail sends in one request: no draft step
    world.queue(3)
    result = run_worker(world.worker_spec(kill_at=step, kill_nth=2))
    assert result.returncode == -signal.SIGKILL, result.stderr[-3000:]
    states = [row["state"] for row in world.rows()]
    assert states[0] == "sent" and states[2] == "queued", states
    expected_second = "sent" if step in ("recorded", "filed") else "sending"
    assert states[1] == expected_second, states
    if step == "created":
        assert world.drafts_left() == 1  # the killed attempt's draft: replaced by the next attempt, never sent
    world.settle()
    world.assert_exactly_once()
    world.sync()
    world.assert_exactly_once()


@BOTH
def test_kill_9_once_the_send_may_have_left_is_resent_only_when_the_proof_says_not_sent(pg_db, server):
    """Killed after the row was marked "maybe sent", before the request left: Gmail and Graph file what they
    accept where the proof looks (``proof_is_complete``), so an absent copy after ``proof_wait`` proves "not
    sent": sent again, once. (SMTP cannot promise that: there it ends "unknown", see test_outbox_send.py.)"""
    world = world_for(pg_db, server, KILL_SETTINGS)
    world.queue(3)
    result = run_worker(world.worker_spec(kill_at="handed_over", kill_nth=2))
    assert result.returncode == -signal.SIGKILL, result.stderr[-3000:]
    second = world.rows()[1]
    assert second["state"] == "sending" and second["handed_over"], second
    assert second["message_id"] not in world.sent_counts()
    time.sleep(1.1)  # proof_wait
    world.settle()
    assert [row["state"] for row in world.rows()] == ["sent", "sent", "sent"], world.rows()
    world.assert_exactly_once()


@BOTH
def test_proof_after_a_crash_between_acceptance_and_the_record(pg_db, server):
    """The server took it, the worker died before writing ``sent``: the next run proves it, never resends."""
    world = world_for(pg_db, server, KILL_SETTINGS)
    world.queue(1)
    result = run_worker(world.worker_spec(kill_at="accepted", kill_nth=1))
    assert result.returncode == -signal.SIGKILL, result.stderr[-3000:]
    assert world.rows()[0]["state"] == "sending" and sum(world.sent_counts().values()) == 1
    report = world.send()
    assert report.proven == 1 and report.sent == 0
    world.assert_exactly_once()
    assert world.rows()[0]["attempts"] == 1


@BOTH
def test_answer_lost_is_proven_not_resent(pg_db, server):
    """The server is slower than the client's timeout: the client gives up, the server sends anyway."""
    world = world_for(pg_db, server, TEST_SETTINGS.__class__(backoff_base=0, proof_wait=3, lease_ttl=30),
                      timeout=1.0)
    world.queue(1)
    if world.kind == "gmail":
        world.server.world.slow_next(SEND["gmail"], 1.5)
    else:
        world.server.world.slow_next(SEND["outlook"], 1.5)
    report = world.send()
    assert report.awaiting_proof == 1 and report.sent == 0
    row = world.rows()[0]
    assert row["state"] == "sending" and "may have been sent" in row["last_error"]
    world.settle()
    world.assert_exactly_once()
    assert world.rows()[0]["attempts"] == 1


@BOTH
def test_5xx_on_send_is_maybe_sent_so_the_proof_decides_then_sent_once(pg_db, server):
    """A 5xx may hide a message the server sent: never resent before the proof had ``proof_wait`` to see it;
    not found then → sent again (the provider files everything it accepts), exactly once."""
    world = world_for(pg_db, server, TEST_SETTINGS.__class__(backoff_base=0, proof_wait=1, lease_ttl=30))
    world.queue(1)
    fail_send(world, 500)
    report = world.send()
    assert report.awaiting_proof == 1 and not world.sent_counts()
    assert "may have been sent" in world.rows()[0]["last_error"]
    world.send()
    assert not world.sent_counts(), "resent before proof_wait: the server may still file it"
    time.sleep(1.1)
    world.settle()
    assert world.rows()[0]["state"] == "sent", world.rows()
    world.assert_exactly_once()


@BOTH
def test_429_backs_off_then_sends_once(pg_db, server):
    world = world_for(pg_db, server, TEST_SETTINGS.__class__(backoff_base=1, proof_wait=0))
    world.queue(1)
    fail_send(world, 429, retry_after=1)
    report = world.send()
    assert report.deferred == 1 and not world.sent_counts()
    row = world.rows()[0]
    assert row["state"] == "queued" and row["failure_kind"] == "temporary", row
    assert "429" in row["last_error"] and "wait 1 s" in row["last_error"] and "retry" in row["last_error"]
    assert world.send().sent == 0  # still backing off
    time.sleep(1.1)
    world.settle()
    world.assert_exactly_once()
    assert world.rows()[0]["attempts"] == 2


@GMAIL
def test_gmail_403_rate_limit_is_temporary(pg_db, server):
    world = world_for(pg_db, server, TEST_SETTINGS.__class__(backoff_base=1, proof_wait=0))
    world.queue(1)
    fail_send(world, 403, reason="userRateLimitExceeded")
    assert world.send().deferred == 1
    assert world.rows()[0]["failure_kind"] == "temporary"
    time.sleep(1.1)
    world.settle()
    world.assert_exactly_once()


@BOTH
def test_400_fails_for_good_with_the_servers_message(pg_db, server):
    world = world_for(pg_db, server)
    world.queue(2)
    if world.kind == "gmail":
        fail_send(world, 400)
        words = "Invalid argument"
    else:
        fail_send(world, 400, code="ErrorInvalidRecipients")
        words = "ErrorInvalidRecipients"
    world.settle()
    rows = world.rows()
    assert rows[0]["state"] == "failed" and rows[0]["failure_kind"] == "permanent", rows[0]
    assert "400" in rows[0]["last_error"] and words in rows[0]["last_error"], rows[0]["last_error"]
    assert "Retry, or Discard" in rows[0]["last_error"]
    assert rows[1]["state"] == "sent"  # one refused message does not stop the account
    assert world.sent_counts() == {rows[1]["message_id"]: 1}
    assert world.drafts_left() == 0  # Outlook: the refused draft is removed, not left in the user's Drafts


@BOTH
def test_auth_lost_fails_every_queued_row_with_the_reconnect_message(pg_db, server):
    world = world_for(pg_db, server)
    world.queue(3)
    world.server.world.expire_access_tokens()
    world.server.world.revoke_refresh_token()
    world.settle()
    rows = world.rows()
    assert all(row["state"] == "failed" and row["failure_kind"] == "permanent" for row in rows), rows
    assert "reconnect" in rows[0]["last_error"].lower() and "invalid_grant" in rows[0]["last_error"]
    assert rows[0]["attempts"] == 1 and rows[1]["attempts"] == 0  # one refused sign-in, not one per message
    assert rows[1]["last_error"] == rows[0]["last_error"]
    assert not world.sent_counts()


@BOTH
def test_token_refused_by_the_api_twice_is_auth_lost(pg_db, server):
    """401 on the send: one fresh token, one more try; refused again → reconnect, never a blind resend."""
    world = world_for(pg_db, server)
    world.queue(1)
    fail_send(world, 401, count=2)
    world.settle()
    row = world.rows()[0]
    assert row["state"] == "failed" and row["failure_kind"] == "permanent", row
    assert "reconnect" in row["last_error"].lower()
    assert not world.sent_counts()


@OUTLOOK
def test_outlook_too_large_is_refused_before_upload(pg_db, server):
    world = world_for(pg_db, server)
    world.queue(1, attachment=os.urandom(3_200_000))
    world.settle()
    row = world.rows()[0]
    assert row["state"] == "failed" and row["failure_kind"] == "permanent"
    assert "too large" in row["last_error"] and "Remove or shrink attachments" in row["last_error"]
    assert not world.sent_counts() and world.drafts_left() == 0


@OUTLOOK
def test_a_draft_left_by_a_killed_attempt_is_replaced_by_the_outbox_mime(pg_db, server):
    """The row was edited after the crash (same Message-ID): what goes out is the outbox's MIME, not the old draft."""
    world = world_for(pg_db, server, KILL_SETTINGS)
    [row_id] = world.queue(1, subject="First")
    result = run_worker(world.worker_spec(kill_at="created", kill_nth=1))
    assert result.returncode == -signal.SIGKILL, result.stderr[-3000:]
    assert world.drafts_left() == 1
    cr = world.conn.cursor()
    cr.execute("""UPDATE maildesk_outbox SET mime = convert_to(replace(convert_from(mime, 'UTF8'), 'First 0',
                                                                   'Edited 0'), 'UTF8') WHERE id = %s""", [row_id])
    world.conn.commit()
    time.sleep(1.1)  # proof_wait: an unsubmitted draft is "not sent" only after it
    world.settle()
    world.assert_exactly_once()
    assert b"Edited 0" in world.sent_raw(world.rows()[0]["message_id"])
