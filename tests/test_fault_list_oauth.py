"""DESIGN §5, the fault list, for Gmail, Outlook and their sender: the local fakes over real sockets
(HTTP for Gmail, TLS for Graph), the production adapters and transports, real PostgreSQL.

What the provider suites already try (kill -9, expired cursors, 429/5xx, revoked credentials, a
rename, a delete) is not repeated here. This file adds:

1. Two worker processes on the same Gmail account, and on the same Outlook account, looping
   bootstrap + incremental + backfill while mail arrives, changes and goes: afterwards the index
   equals the server, no row doubled, each row announced new once.
2. A TCP connection cut in the middle of a response (``CutProxy``, a ``TcpProxy`` between the
   adapter and the fake; for Graph it forwards the TLS bytes), during a bootstrap page and during an
   incremental pass: nothing lost, the next run heals.
3. A label / folder deleted and re-created under the same name between two runs, a renamed one
   whose old name is taken by a new one, and one missing from a single listing.
4. Malformed data from the API: Gmail metadata headers that are garbage, a Graph message with null
   or absent fields and absurd dates: indexed with what can be read, neighbours unaffected.
5. Sending: two sender processes on the same Gmail and Outlook outbox; a TCP cut during
   messages.send and during Outlook's draft upload / send: each message sent exactly once.

Which response the proxy cuts is named on the server side: a fake's method (``list_messages``,
``delta``, ``send``...) is wrapped on the test's world instance, and when it runs for the chosen
call, the proxy's link serving that request (found by the handler's peer port) lets ``after`` more
bytes of the answer through, then closes both sides. The fakes themselves are unchanged.

Run as ``python -m tests.test_fault_list_oauth '<json>'`` this module is a looping sync worker.
"""

import contextlib
import datetime as dt
import json
import os
import random
import socket
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler

import pytest

from maildesk_mail_client.application.ports import SyncSettings
from maildesk_mail_client.application.sending import SendSettings
from maildesk_mail_client.application.use_cases import backfill
from maildesk_mail_client.providers.gmail.transport import GmailTransport
from maildesk_mail_client.providers.outlook.transport import OutlookTransport

from .harness import postgres
from .harness.gmail_engine import GmailSync, SlowHooks, expected_index, gmail_config, raw_message, seed
from .harness.gmail_server import GmailServer
from .harness.graph_mail import StoredMessage
from .harness.graph_server import GraphServer
from .harness.outlook_world import OutlookWorld, graph_spec, query
from .harness.send_oauth import OAuthSendWorld
from .harness.tcp_proxy import TcpProxy, _close, _Link

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SEED = 20250901
HOOK_TABLE = "oauth_fault_hook_log"


# ---------------------------------------------------------------------------
# fixtures and helpers
# ---------------------------------------------------------------------------


def logged(world, who):
    world.ctx.hooks = SlowHooks(0, world.conn.cursor(), HOOK_TABLE, who)
    return world


def gmail_sync(pg_db, server, settings, url=None, **options):
    return GmailSync(pg_db, url or server.url, server.world.refresh_token, settings, token_url=server.token_url,
                     **options)


def outlook_world(pg_db, server, settings, spec=None):
    world = OutlookWorld(pg_db, server, settings, refresh_token=server.world.refresh_token, timeout=5)
    if spec is not None:
        world.graph = spec  # the adapter goes through the proxy; the truth is still read from server.world
    return world


def reset_backoff(world):
    query(world, "UPDATE mailbox_account SET backoff_until = NULL, failure_count = 0 WHERE id = %s",
          [world.account_id])


def account_state(world):
    return query(world, "SELECT auth_state, failure_count, last_error FROM mailbox_account WHERE id = %s",
                 [world.account_id])[0]


def assert_each_row_announced_new_once(world, hook_log):
    rows = hook_log(f"""SELECT i.id, count(h.id) FILTER (WHERE h.is_new)
                          FROM maildesk_message_index i LEFT JOIN {HOOK_TABLE} h ON h.index_id = i.id
                         WHERE i.account_id = %s GROUP BY i.id""", [world.account_id])
    wrong = sorted((index_id, count) for index_id, count in rows if count != 1)
    assert not wrong, f"index rows announced as new other than once (id, times): {wrong[:10]}"


def assert_no_doubled_rows(world):
    """One row per (folder, message), live or not: a second one is a doubled message."""
    doubled = query(world, """SELECT folder_id, remote_id, count(*) FROM maildesk_message_index
                               WHERE account_id = %s GROUP BY 1, 2 HAVING count(*) > 1""", [world.account_id])
    assert not doubled, f"doubled rows (folder, message, count): {doubled[:5]}"


def gmail_index_is_part_of_the_server(sync, world):
    """What a cut run left: every live row is one the server has, with the server's flags."""
    expected = expected_index(world)
    wrong = {key: flags for key, flags in sync.index().items() if expected.get(key) != flags}
    assert not wrong, f"rows the server does not have, or with other flags: {list(wrong.items())[:5]}"


def outlook_index_is_part_of_the_server(world):
    server = world.server_messages()
    wrong = {key: row for key, row in world.index().items() if server.get(key) != row}
    assert not wrong, f"rows the server does not have, or with other folder/flags: {list(wrong.items())[:5]}"


# ---------------------------------------------------------------------------
# a proxy that cuts the answer to a request the fake names
# ---------------------------------------------------------------------------


class CutProxy(TcpProxy):
    """A ``TcpProxy`` whose links are known by the port their upstream socket connects from, which is
    the client address the fake's handler sees: the fake's side can say "cut the answer I am writing"."""

    def __init__(self, target_host, target_port):
        super().__init__(target_host, target_port)
        self.links = {}
        self.cuts = 0

    def _accept_loop(self):
        while not self._stopped:
            try:
                client, _address = self._listener.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(self.target, timeout=10)
                upstream.settimeout(None)
            except OSError:
                _close(client)
                continue
            link = _Link(self, client, upstream)
            with self._lock:
                self.connections += 1
                self._sockets.update((client, upstream))
                self.links[upstream.getsockname()[1]] = link
            threading.Thread(target=link.client_to_server, name="cut-proxy-c2s", daemon=True).start()
            threading.Thread(target=link.server_to_client, name="cut-proxy-s2c", daemon=True).start()

    def cut_this_answer(self, after, what):
        """Called from the fake's handler thread while it works out its answer."""
        frame = sys._getframe(1)
        while frame is not None:
            handler = frame.f_locals.get("self")
            if isinstance(handler, BaseHTTPRequestHandler):
                break
            frame = frame.f_back
        assert frame is not None, "cut_this_answer called outside a request handler"
        with self._lock:
            link = self.links[handler.client_address[1]]
            self.cuts += 1
        link.trigger(what.encode() + b" x", after)


def cut_during(proxy, world, method, after, *, nth=1, when=None):
    """The ``nth`` call of the fake's ``world.method`` (for which ``when(*args, **kwargs)`` holds) has
    its HTTP answer cut after ``after`` bytes, once."""
    original = getattr(world, method)
    seen = [0]

    def wrapped(*args, **kwargs):
        if when is None or when(*args, **kwargs):
            seen[0] += 1
            if seen[0] == nth:
                proxy.cut_this_answer(after, method)
        return original(*args, **kwargs)

    setattr(world, method, wrapped)
    return lambda: setattr(world, method, original)


@contextlib.contextmanager
def proxy_to(url):
    host, port = url.split("//", 1)[1].split("/", 1)[0].split(":")
    proxy = CutProxy(host, int(port)).start()
    try:
        yield proxy
    finally:
        proxy.stop()


def proxied_url(proxy, url):
    scheme, rest = url.split("//", 1)
    path = rest.split("/", 1)[1] if "/" in rest else ""
    return f"{scheme}//{proxy.host}:{proxy.port}" + (f"/{path}" if path else "")


def proxied_graph(proxy, server):
    """The adapter's spec through the proxy. The fake writes its nextLink / deltaLink with its own
    ``url`` (as Graph writes its own host), so that is pointed at the proxy too: else every link the
    adapter follows would bypass it."""
    spec = graph_spec(server)
    spec.update(url=proxied_url(proxy, server.url), authority=proxied_url(proxy, server.authority))
    server.url = spec["url"]
    return spec


# ---------------------------------------------------------------------------
# 1. two worker processes on the same account
# ---------------------------------------------------------------------------

TWO_WORKERS = {"first_chunk": 20, "chunk": 20, "bootstrap_limit": 60, "lease_ttl": 300,
               "folder_listing_interval": 0}


def worker_main(spec):
    """Loops bootstrap, an incremental pass and a backfill step over one account, ``rounds`` times."""
    def connect():
        return postgres.connect(spec["pg"], spec["dbname"])

    settings = SyncSettings(**spec["settings"])
    if spec["kind"] == "gmail":
        world = GmailSync(connect, spec["url"], spec["refresh_token"], settings, account_id=spec["account_id"],
                          token_url=spec["token_url"])
    else:
        world = OutlookWorld(connect, spec["graph"], settings, account_id=spec["account_id"], timeout=5)
    world.ctx.hooks = SlowHooks(spec["delay"], world.conn.cursor(), HOOK_TABLE, f"worker-{os.getpid()}")
    for _round in range(spec["rounds"]):
        world.bootstrap_once()
        world.sync()
        backfill(world.ctx, time.monotonic() + 60)
        time.sleep(0.02)
    print("worker finished", flush=True)


def spawn_workers(spec, tmp_path, count=2):
    workers = []
    for number in range(count):
        stderr = open(tmp_path / f"worker{number}.err", "w")  # noqa: SIM115 - closed in finish_workers
        process = subprocess.Popen([sys.executable, "-m", "tests.test_fault_list_oauth", json.dumps(spec)],
                                   cwd=REPO, env={**os.environ, "PYTHONPATH": REPO}, stdout=subprocess.DEVNULL,
                                   stderr=stderr)
        workers.append((process, stderr, tmp_path / f"worker{number}.err"))
    return workers


def finish_workers(workers, timeout=90):
    deadline = time.monotonic() + timeout
    outputs = []
    for process, stderr, path in workers:
        try:
            process.wait(max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        stderr.close()
        output = path.read_text(errors="replace")[-4000:]
        assert process.returncode == 0, f"a worker ended with {process.returncode}:\n{output}"
        assert "Traceback" not in output, output
        outputs.append(output)
    return outputs


def running(workers):
    return any(process.poll() is None for process, _stderr, _path in workers)


def test_two_workers_on_the_same_gmail_account(pg_db, gmail, hook_log, tmp_path):
    rng = random.Random(f"{SEED}:gmail-two")
    world = gmail.world
    labels = [world.add_label(name) for name in ("Work", "Family", "Work/Deep")]
    ids = seed(world, 240, labels, rng=rng)
    sync = logged(gmail_sync(pg_db, gmail, SyncSettings(**TWO_WORKERS)), "final")
    spec = {"kind": "gmail", "pg": pg_db.server, "dbname": pg_db.dbname, "settings": TWO_WORKERS, "delay": 0.002,
            "url": gmail.url, "token_url": gmail.token_url, "refresh_token": world.refresh_token,
            "account_id": sync.account_id, "rounds": 6}
    workers = spawn_workers(spec, tmp_path)
    number, deadline = 5000, time.monotonic() + 90
    while running(workers) and time.monotonic() < deadline:
        seed(world, 4, labels, rng=rng, start=number, base_ms=1_700_000_000_000)
        number += 4
        live = sorted(world.message_ids())
        for message_id in rng.sample(live, 4):
            world.modify(message_id, add=(rng.choice(labels), "STARRED"), remove=("UNREAD", "INBOX"))
        world.delete(rng.choice(live))
        time.sleep(0.15)
    finish_workers(workers)
    busy = hook_log(f"SELECT count(DISTINCT who) FROM {HOOK_TABLE} WHERE who LIKE 'worker-%%'")[0][0]
    assert busy >= 1
    assert sync.account_state()[:2] == ("ok", 0), sync.account_state()

    sync.full_sync()  # what changed after the workers' last pass
    total = sync.assert_matches(world)
    assert total > len(ids)
    assert_no_doubled_rows(sync)
    assert_each_row_announced_new_once(sync, hook_log)


def test_two_workers_on_the_same_outlook_account(pg_db, graph, hook_log, tmp_path):
    rng = random.Random(f"{SEED}:outlook-two")
    server = graph.world
    folders = [server.well_known("inbox"), server.well_known("archive"), server.add_folder("Projects")]
    for number in range(240):
        server.add_message(folders[number % 3], subject=f"m{number}", is_read=rng.random() < 0.5,
                           flagged=rng.random() < 0.1)
    world = logged(outlook_world(pg_db, graph, SyncSettings(**TWO_WORKERS)), "final")
    spec = {"kind": "outlook", "pg": pg_db.server, "dbname": pg_db.dbname, "settings": TWO_WORKERS,
            "delay": 0.002, "graph": graph_spec(graph), "account_id": world.account_id, "rounds": 6}
    workers = spawn_workers(spec, tmp_path)
    number, deadline = 5000, time.monotonic() + 90
    while running(workers) and time.monotonic() < deadline:
        for _ in range(4):
            server.add_message(rng.choice(folders), subject=f"m{number}")
            number += 1
        live = sorted(server.message_ids())
        for msg_id in rng.sample(live, 3):
            server.update(msg_id, is_read=True, flagged=rng.random() < 0.5)
        server.move(rng.choice(live), rng.choice(folders))
        server.delete(rng.choice(sorted(server.message_ids())))
        time.sleep(0.15)
    finish_workers(workers)
    state = account_state(world)
    assert state[:2] == ("ok", 0), state

    world.full_sync()
    world.assert_index_matches_server()
    assert_no_doubled_rows(world)
    assert_each_row_announced_new_once(world, hook_log)


# ---------------------------------------------------------------------------
# 2. a TCP connection cut in the middle of a response
# ---------------------------------------------------------------------------

CUT = {"first_chunk": 20, "chunk": 20, "bootstrap_limit": 1500, "folder_listing_interval": 0}


@pytest.mark.parametrize("target", ["list_messages", "get_message"])
def test_gmail_cut_mid_answer_during_a_bootstrap(target, pg_db, gmail, hook_log):
    """``list_messages``: a listing page of a walk; ``get_message``: the multipart answer of a metadata batch."""
    world = gmail.world
    labels = [world.add_label(name) for name in ("A", "B")]
    seed(world, 150, labels, rng=random.Random(f"{SEED}:gmail-cut"))
    with proxy_to(gmail.url) as proxy:
        sync = logged(gmail_sync(pg_db, gmail, SyncSettings(**CUT), url=proxied_url(proxy, gmail.url)), "test")
        sync.bootstrap_once()  # the first chunk of each folder
        # The next page of INBOX's walk, or the next batch of metadata: 300 bytes of it pass.
        inbox = (lambda labels, **_options: list(labels) == ["INBOX"]) if target == "list_messages" else None
        cut_during(proxy, world, target, 300, when=inbox)
        sync.bootstrap_once()
        assert proxy.cut.wait(5), "the proxy never cut the connection"
        assert proxy.cut_info["bytes"] == 300
        gmail_index_is_part_of_the_server(sync, world)
        reset_backoff(sync)
        sync.full_sync()
    sync.assert_matches(world)
    assert_no_doubled_rows(sync)
    assert_each_row_announced_new_once(sync, hook_log)


@pytest.mark.parametrize("target", ["list_history", "get_message"])
def test_gmail_cut_mid_answer_during_an_incremental_pass(target, pg_db, gmail, hook_log):
    world = gmail.world
    labels = [world.add_label(name) for name in ("A", "B")]
    rng = random.Random(f"{SEED}:gmail-cut-sync")
    ids = seed(world, 80, labels, rng=rng)
    with proxy_to(gmail.url) as proxy:
        sync = logged(gmail_sync(pg_db, gmail, SyncSettings(**CUT), url=proxied_url(proxy, gmail.url),
                                 history_page=20), "test")
        sync.full_sync()
        seed(world, 60, labels, rng=rng, start=1000, base_ms=1_800_000_000_000)
        for message_id in ids[:20]:
            world.modify(message_id, add=("STARRED", labels[1]), remove=("UNREAD",))
        for message_id in ids[20:25]:
            world.delete(message_id)
        cut_during(proxy, world, target, 300, nth=2)
        sync.sync()
        assert proxy.cut.wait(5), "the proxy never cut the connection"
        gmail_index_is_part_of_the_server(sync, world)
        reset_backoff(sync)
        sync.sync()
    sync.assert_matches(world)
    assert_no_doubled_rows(sync)
    assert_each_row_announced_new_once(sync, hook_log)


def _outlook_seed(server, rng, counts):
    ids = {"inbox": server.well_known("inbox"), "archive": server.well_known("archive")}
    for name, count in counts.items():
        for number in range(count):
            server.add_message(ids[name], subject=f"{name} {number}", is_read=rng.random() < 0.5,
                               flagged=rng.random() < 0.1, body=f"Body {number} " + "x" * 200)
    return ids


def test_outlook_cut_mid_answer_during_a_bootstrap_page(pg_db, graph, hook_log):
    """The TLS stream of a messages page is cut after 2,000 bytes (the page is ~tens of kB)."""
    _outlook_seed(graph.world, random.Random(f"{SEED}:outlook-cut"), {"inbox": 150, "archive": 40})
    with proxy_to(graph.base) as proxy:
        world = logged(outlook_world(pg_db, graph, SyncSettings(**CUT), proxied_graph(proxy, graph)), "test")
        world.bootstrap_once()  # the first chunk of each folder
        inbox = graph.world.well_known("inbox")
        cut_during(proxy, graph.world, "message_page", 2000, when=lambda folder, **_options: folder == inbox)
        world.bootstrap_once()
        assert proxy.cut.wait(5), "the proxy never cut the connection"
        outlook_index_is_part_of_the_server(world)
        reset_backoff(world)
        world.full_sync()
    assert world.assert_index_matches_server() == 190
    assert_no_doubled_rows(world)
    assert_each_row_announced_new_once(world, hook_log)


def test_outlook_cut_mid_answer_during_an_incremental_pass(pg_db, graph, hook_log):
    server = graph.world
    ids = _outlook_seed(server, random.Random(f"{SEED}:outlook-cut-sync"), {"inbox": 80, "archive": 20})
    with proxy_to(graph.base) as proxy:
        world = logged(outlook_world(pg_db, graph, SyncSettings(**CUT), proxied_graph(proxy, graph)), "test")
        world.full_sync()
        inbox = sorted(server.message_ids(ids["inbox"]))
        for msg_id in inbox[:15]:
            server.update(msg_id, is_read=True, flagged=True)
        for msg_id in inbox[15:20]:
            server.move(msg_id, ids["archive"])
        for msg_id in inbox[20:25]:
            server.delete(msg_id)
        for number in range(60):
            server.add_message(ids["inbox"], subject=f"new {number}", body="y" * 300)
        # A delta page of changes, not the "latest" pin of a first visit.
        cut_during(proxy, server, "delta", 200,
                   when=lambda folder, state, *rest: isinstance(state, list) and state[1] == ids["inbox"])
        world.sync()
        assert proxy.cut.wait(5), "the proxy never cut the connection"
        outlook_index_is_part_of_the_server(world)
        reset_backoff(world)
        world.sync()
    assert world.assert_index_matches_server() == 100 - 5 + 60
    assert_no_doubled_rows(world)
    assert_each_row_announced_new_once(world, hook_log)


# ---------------------------------------------------------------------------
# 3. folders deleted and re-created, renamed over, missing from one listing
# ---------------------------------------------------------------------------

FOLDERS = {"first_chunk": 50, "chunk": 50, "folder_listing_interval": 0}


def test_gmail_label_deleted_and_recreated_with_the_same_name(pg_db, gmail, hook_log):
    world = gmail.world
    work, travel = world.add_label("Work"), world.add_label("Travel")
    ids = seed(world, 60, (work, travel), rng=random.Random(f"{SEED}:labels"))
    sync = logged(gmail_sync(pg_db, gmail, SyncSettings(**FOLDERS)), "test")
    sync.full_sync()
    old_folder = sync.folders()[work]
    old_rows = {key for key in sync.index() if key[0] == work}
    assert old_rows

    # Between two runs: "Work" deleted and made again (a new label id), three messages in the new one;
    # "Travel" renamed "Trips" and a new "Travel" made.
    world.delete_label(work)
    new_work = world.add_label("Work")
    for message_id in ids[:3]:
        world.modify(message_id, add=(new_work,))
    travel_rows = {key[1] for key in sync.index() if key[0] == travel}
    travel_folder = sync.folders()[travel]
    world.rename_label(travel, "Trips")
    new_travel = world.add_label("Travel")
    world.modify(ids[5], add=(new_travel,))
    sync.sync()

    folders = sync.folders()
    assert work not in folders, "the deleted label is still a folder"
    assert folders[new_work].path == "Work" and folders[new_work].id != old_folder.id
    assert {key[1] for key in sync.index() if key[0] == new_work} == set(ids[:3])
    assert (folders[travel].id, folders[travel].path) == (travel_folder.id, "Trips"), "the rename kept its folder"
    assert {key[1] for key in sync.index() if key[0] == travel} == travel_rows, "the renamed folder kept its rows"
    assert folders[new_travel].path == "Travel"
    sync.assert_matches(world)
    assert_no_doubled_rows(sync)
    assert_each_row_announced_new_once(sync, hook_log)


def test_gmail_label_missing_from_one_listing_keeps_its_rows(pg_db, gmail, hook_log):
    world = gmail.world
    work = world.add_label("Work")
    ids = seed(world, 40, (work,), rng=random.Random(f"{SEED}:missing"))
    sync = logged(gmail_sync(pg_db, gmail, SyncSettings(**FOLDERS)), "test")
    sync.full_sync()
    before = sync.index()
    folder = sync.folders()[work]

    original = world.list_labels
    omitted = []

    def list_labels_once_without_work():
        answer = original()
        if not omitted:
            omitted.append(True)
            answer["labels"] = [label for label in answer["labels"] if label["id"] != work]
        return answer

    world.list_labels = list_labels_once_without_work
    world.modify(ids[0], add=("STARRED",))
    sync.sync()
    assert omitted, "labels.list was not called in the pass"
    assert sync.folders()[work].id == folder.id, "one listing without the label dropped its folder"
    assert {key for key in sync.index() if key[0] == work} == {key for key in before if key[0] == work}
    sync.sync()
    sync.assert_matches(world)
    assert_each_row_announced_new_once(sync, hook_log)


def test_outlook_folder_deleted_and_recreated_with_the_same_name(pg_db, graph, hook_log):
    server = graph.world
    projects = server.add_folder("Projects")
    travel = server.add_folder("Travel")
    for number in range(30):
        server.add_message(projects, subject=f"p{number}")
        server.add_message(travel, subject=f"t{number}")
    world = logged(outlook_world(pg_db, graph, SyncSettings(**FOLDERS)), "test")
    world.full_sync()
    old_folder = world.folders()[projects]
    travel_rows = {remote_id for remote_id, row in world.index().items() if row[0] == travel}
    travel_folder = world.folders()[travel]

    server.delete_folder(projects)
    new_projects = server.add_folder("Projects")
    fresh = {server.add_message(new_projects, subject=f"n{number}") for number in range(3)}
    server.rename_folder(travel, "Trips")
    new_travel = server.add_folder("Travel")
    server.add_message(new_travel, subject="new travel")
    world.sync()  # lists the folders: the old ones go, the new ones come, to be bootstrapped
    world.bootstrap_all()

    folders = world.folders()
    assert projects not in folders, "the deleted folder is still there"
    assert folders[new_projects].path == "Projects" and folders[new_projects].id != old_folder.id
    assert {remote_id for remote_id, row in world.index().items() if row[0] == new_projects} == fresh
    assert (folders[travel].id, folders[travel].path) == (travel_folder.id, "Trips")
    assert {remote_id for remote_id, row in world.index().items() if row[0] == travel} == travel_rows
    world.assert_index_matches_server()
    assert_each_row_announced_new_once(world, hook_log)


def test_outlook_folder_missing_from_one_listing_page_keeps_its_rows(pg_db, graph, hook_log):
    server = graph.world
    projects = server.add_folder("Projects")
    child = server.add_folder("Child", projects)
    for number in range(20):
        server.add_message(projects, subject=f"p{number}")
        server.add_message(child, subject=f"c{number}")
    world = logged(outlook_world(pg_db, graph, SyncSettings(**FOLDERS)), "test")
    world.full_sync()
    before = world.index()
    folder_ids = {key: folder.id for key, folder in world.folders().items()}

    original = server.list_folders
    omitted = []

    def list_folders_once_without_projects(parent_ref, **options):
        values, more = original(parent_ref, **options)
        if not omitted and any(item["id"] == projects for item in values):
            omitted.append(True)
            values = [item for item in values if item["id"] != projects]
        return values, more

    server.list_folders = list_folders_once_without_projects
    server.update(sorted(server.message_ids(projects))[0], is_read=True)
    world.sync()
    assert omitted, "the folder listing was not read in the pass"
    assert {key: folder.id for key, folder in world.folders().items()} == folder_ids, \
        "one listing page without the folder dropped it (or its child)"
    assert {k: v for k, v in world.index().items() if v[0] in (projects, child)}.keys() == \
        {k for k, v in before.items() if v[0] in (projects, child)}
    world.sync()
    world.assert_index_matches_server()
    assert_each_row_announced_new_once(world, hook_log)


# ---------------------------------------------------------------------------
# 4. malformed data from the API
# ---------------------------------------------------------------------------

GARBAGE_HEADERS = {
    "broken-2047": b"Subject: =?utf-8?q?caf=C3=A9 no end =?x-unknown?b?!!!?= =?utf-8?b?####?=\r\n"
                   b"From: =?utf-8?q?Ren=C3=A9e <renee@example.org>\r\n",
    "long-subject": b"Subject: " + b"A" * 10_000 + b"\r\n",
    "nul-bytes": b"Subject: before\x00after\r\nFrom: Nul\x00 <nul\x00@example.org>\r\nTo: a\x00b@example.com\r\n",
    "bad-date": b"Subject: bad date\r\nDate: Mon, 99 Foo 99999 99:99:99 +9999\r\n",
    "not-a-date": b"Subject: not a date\r\nDate: yesterday, around noon\r\n",
    "8bit-junk": b"Subject: \xff\xfe\xc3(\x80 raw bytes\r\nFrom: \xe9t\xe9 <x@example.org>\r\n",
}


def garbage_message(kind, number):
    head = GARBAGE_HEADERS[kind]
    if b"From:" not in head:
        head += b"From: someone@example.org\r\n"
    if b"Date:" not in head:
        head += b"Date: Tue, 2 Jan 2024 10:00:00 +0000\r\n"
    return head + f"Message-ID: <garbage{number}@example.org>\r\n\r\nBody\r\n".encode()


def test_gmail_garbage_metadata_headers_are_indexed_without_blocking_neighbours(pg_db, gmail, hook_log):
    world = gmail.world
    neighbours = [world.add_message(raw_message(n), ("INBOX",), internal_date=1_700_000_000_000 + n * 60_000)
                  for n in range(12)]
    garbage = {}
    for number, kind in enumerate(GARBAGE_HEADERS):
        garbage[kind] = world.add_message(garbage_message(kind, number), ("INBOX", "UNREAD"),
                                          internal_date=1_700_000_000_000 + (number * 2 + 1) * 60_000)
    sync = logged(gmail_sync(pg_db, gmail, SyncSettings(first_chunk=5, chunk=5)), "test")
    sync.full_sync()
    sync.assert_matches(world)  # every message in INBOX and All Mail, neighbours included
    rows = dict((remote_id, (subject, sender, date)) for remote_id, subject, sender, date in query(
        sync, """SELECT i.remote_id, i.subject, i.from_address, i.date FROM maildesk_message_index i
                  JOIN maildesk_folder f ON f.id = i.folder_id WHERE f.remote_id = 'INBOX'"""))
    assert set(rows) == set(neighbours) | set(garbage.values())
    assert rows[garbage["long-subject"]][0].startswith("AAAA")
    assert "before" in rows[garbage["nul-bytes"]][0] and "\x00" not in rows[garbage["nul-bytes"]][0]
    internal = query(sync, "SELECT remote_id, internal_date FROM maildesk_message_index WHERE remote_id IN %s",
                     [(garbage["bad-date"], garbage["not-a-date"])])
    for remote_id, internal_date in internal:
        assert rows[remote_id][2] == internal_date, "a Date that does not parse: the arrival time stands in"
    assert rows[garbage["broken-2047"]][0], "an invalid encoded word still gives a subject"

    # The next pass over the same messages changes nothing and raises nothing.
    world.modify(garbage["nul-bytes"], remove=("UNREAD",))
    sync.sync()
    sync.assert_matches(world)
    assert_each_row_announced_new_once(sync, hook_log)


_ODD_FIELDS = ("subject", "from", "sender", "toRecipients", "ccRecipients", "bodyPreview", "internetMessageId",
               "internetMessageHeaders", "conversationId", "hasAttachments", "sentDateTime")
_ABSENT = object()


class _OddMessage(StoredMessage):
    """How Graph shows some messages (items from old migrations, broken imports): null (``shape`` "null")
    or absent ("absent") subject, sender, recipients, preview, Message-ID; received in year 1 or 9999.
    The fake orders by the stored ``received``, so the listing's order and the dates shown agree."""

    shape = "null"

    def _property(self, name):
        if name in _ODD_FIELDS:
            return None if self.shape == "null" else _ABSENT
        if name in ("createdDateTime", "receivedDateTime", "lastModifiedDateTime"):
            if self.shape == "garbled":
                return "not-a-date"  # never seen from Graph; it must still cost only this message its date
            # graph_mail.iso() would write year 1 as "1-01-01" (glibc's %Y): Graph pads it.
            return f"{self.received.year:04d}" + self.received.strftime("-%m-%dT%H:%M:%SZ")
        return super()._property(name)

    def json(self, select=None, *, with_size=False, odata_type=False):
        shaped = super().json(select, with_size=with_size, odata_type=odata_type)
        return {key: value for key, value in shaped.items() if value is not _ABSENT}


def test_outlook_null_and_absent_fields_are_indexed_without_blocking_neighbours(pg_db, graph, hook_log):
    server = graph.world
    inbox = server.well_known("inbox")
    ids = [server.add_message(inbox, subject=f"n{number}") for number in range(12)]
    odd = {}
    absurd = {"null": dt.datetime(1, 1, 1, tzinfo=dt.timezone.utc),
              "absent": dt.datetime(9999, 12, 31, 23, 59, 59, tzinfo=dt.timezone.utc),
              "garbled": dt.datetime(2025, 1, 1, 0, 5, tzinfo=dt.timezone.utc)}
    for shape, received in absurd.items():
        msg_id = server.add_message(inbox, subject=f"odd {shape}", received=received)
        message = server._messages[msg_id]
        message.__class__ = type(f"_Odd{shape}", (_OddMessage,), {"shape": shape})
        message.raw = b"X-Odd: yes\r\n\r\nno headers to speak of\r\n"  # its MIME, as /$value and the size show it
        odd[shape] = msg_id
    ids += [server.add_message(inbox, subject=f"n{number}") for number in range(12, 20)]
    world = logged(outlook_world(pg_db, graph, SyncSettings(first_chunk=5, chunk=5)), "test")
    world.full_sync()
    for _round in range(20):  # the backfill to its end, one step a run
        if not backfill(world.ctx, world.deadline())[2]:
            break
    world.assert_index_matches_server()
    indexed = world.index()
    assert set(ids) | set(odd.values()) == set(indexed)
    server.update(odd["null"], is_read=True)
    server.update(ids[0], is_read=True)
    world.sync()
    world.assert_index_matches_server()
    assert_each_row_announced_new_once(world, hook_log)


# ---------------------------------------------------------------------------
# 5. sending: two senders, and a TCP cut during the send request
# ---------------------------------------------------------------------------

SEND_SETTINGS = SendSettings(backoff_base=0, proof_wait=1, lease_ttl=30)
BOTH = pytest.mark.parametrize("kind", ["gmail", "outlook"])


class ProxiedSendWorld(OAuthSendWorld):
    """The transport goes through the proxy; the sync world's reads and the truth go direct."""

    proxy = None

    def transport(self, account_id):
        assert account_id == self.account_id
        if self.proxy is None:
            return super().transport(account_id)
        if self.kind == "gmail":
            transport = GmailTransport(gmail_config(proxied_url(self.proxy, self.server.url), self.sync_world.tokens,
                                                    timeout=self.timeout))
        else:
            spec = proxied_graph(self.proxy, self.server)
            transport = OutlookTransport(self.sync_world.config(graph_url=spec["url"], authority=spec["authority"]))
        self.transports.append(transport)
        return transport


@contextlib.contextmanager
def fake(kind):
    with (GmailServer() if kind == "gmail" else GraphServer()) as server:
        if kind == "gmail":
            server.world.quota_per_minute = 10**9
        yield server


@BOTH
def test_two_sender_processes_on_the_same_outbox_send_each_message_once(kind, pg_db, tmp_path):
    with fake(kind) as server:
        world = ProxiedSendWorld(kind, pg_db, server, SEND_SETTINGS)
        world.queue(12)
        spec = json.dumps(world.worker_spec())
        processes = [subprocess.Popen([sys.executable, "-m", "tests.harness.send_oauth", spec], cwd=REPO,
                                      env={**os.environ, "PYTHONPATH": REPO}, stdout=subprocess.PIPE,
                                      stderr=subprocess.PIPE, text=True) for _ in range(2)]
        for process in processes:
            _out, err = process.communicate(timeout=120)
            assert process.returncode == 0, err[-3000:]
            assert "Traceback" not in err, err[-3000:]
        world.settle()
        world.assert_exactly_once()
        world.sync()
        world.assert_exactly_once()


# Outlook sends in two requests (the MIME as a draft, then its send): both answers can be cut.
CUT_SENDS = [("gmail", "send"), ("outlook", "create_draft"), ("outlook", "send_draft")]


@pytest.mark.parametrize("kind,method", CUT_SENDS)
@pytest.mark.parametrize("after", [1, 60])
def test_a_cut_during_the_send_request_sends_once_and_loses_nothing(kind, method, after, pg_db):
    """The server carried the request out; its answer is cut after ``after`` bytes (inside the status line,
    inside the headers): the row is "maybe sent", the proof decides, each message leaves once."""
    with fake(kind) as server, proxy_to(server.url if kind == "gmail" else server.base) as proxy:
        world = ProxiedSendWorld(kind, pg_db, server, SEND_SETTINGS)
        world.proxy = proxy
        world.queue(3)
        cut_during(proxy, server.world, method, after, nth=2)
        world.settle(timeout=60)
        assert proxy.cut.is_set(), "the proxy never cut the connection"
        world.assert_exactly_once()
        world.sync()
        world.assert_exactly_once()


if __name__ == "__main__":
    worker_main(json.loads(sys.argv[1]))
