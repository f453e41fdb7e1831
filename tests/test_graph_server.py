"""The fake Graph + Azure AD server speaks what msal and a Graph client expect, over real HTTPS."""

import base64
import email
import threading
import urllib.parse

import msal
import pytest

from .harness.graph_server import GraphServer

SCOPES = ["https://graph.microsoft.com/Mail.ReadWrite"]
IMMUTABLE = {"Prefer": 'IdType="ImmutableId"'}


@pytest.fixture
def server():
    with GraphServer() as running:
        yield running


@pytest.fixture
def graph(server):
    """get(path_or_url, **kw) -> response, authorised, with the ImmutableId preference."""
    session = server.session()
    token = server.world.issue_access_token()

    def call(method, target, *, headers=None, **kwargs):
        url = target if target.startswith("https://") else server.url + target
        merged = {"Authorization": f"Bearer {token}", **IMMUTABLE, **(headers or {})}
        return session.request(method, url, headers=merged, timeout=10, **kwargs)

    return call


def app_for(server):
    world = server.world
    return msal.ConfidentialClientApplication(
        world.client_id, client_credential=world.client_secret, authority=server.authority,
        instance_discovery=False, http_client=server.session(),
    )


def follow(graph, target, key="@odata.nextLink", headers=None):
    """Every page of a listing: (pages, last body)."""
    pages = []
    while target:
        body = graph("GET", target, headers=headers).json()
        pages.append(body["value"])
        target = body.get(key)
    return pages, body


# ---------------------------------------------------------------- Azure AD
def test_msal_refresh_rotates_the_refresh_token_and_the_old_one_dies(server):
    world, app = server.world, app_for(server)
    first = world.refresh_token
    result = app.acquire_token_by_refresh_token(first, scopes=SCOPES)
    assert result["token_type"] == "Bearer" and result["expires_in"] > 3000
    assert result["refresh_token"] == world.refresh_token != first
    assert world.access_token_valid(result["access_token"])
    assert world.token_requests[-1][0] == "refresh_token"
    assert "Mail.ReadWrite" in world.token_requests[-1][1]

    # The rotated token was lost: the old one no longer works (odoo#109213's story).
    stale = app.acquire_token_by_refresh_token(first, scopes=SCOPES)
    assert stale["error"] == "invalid_grant" and stale["error_codes"] == [70000]
    assert stale["error_description"].startswith("AADSTS70000:")

    again = app.acquire_token_by_refresh_token(result["refresh_token"], scopes=SCOPES)
    assert "access_token" in again
    assert set(world.requests) >= {"GET /{tenant}/v2.0/.well-known/openid-configuration",
                                   "POST /{tenant}/oauth2/v2.0/token"}


@pytest.mark.filterwarnings("ignore:response_mode:UserWarning")
def test_revoked_refresh_token_answers_invalid_grant_until_reconnected(server):
    world, app = server.world, app_for(server)
    world.revoke_refresh_token()
    refused = app.acquire_token_by_refresh_token(world.refresh_token, scopes=SCOPES)
    assert refused["error"] == "invalid_grant"

    world.revoke_refresh_token("interaction_required")
    refused = app.acquire_token_by_refresh_token(world.refresh_token + "x", scopes=SCOPES)
    assert refused["error"] == "interaction_required" and refused["error_codes"] == [50076]

    flow = app.initiate_auth_code_flow(SCOPES, redirect_uri="https://odoo.example.com/callback")
    redirect = server.session().get(flow["auth_uri"], allow_redirects=False, timeout=10).headers["Location"]
    assert redirect.startswith("https://odoo.example.com/callback?")
    answer = dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(redirect).query))
    reconnected = app.acquire_token_by_auth_code_flow(flow, answer)
    assert reconnected["refresh_token"] == world.refresh_token
    assert "access_token" in app.acquire_token_by_refresh_token(world.refresh_token, scopes=SCOPES)


def test_wrong_client_secret_is_invalid_client(server):
    world = server.world
    app = msal.ConfidentialClientApplication(
        world.client_id, client_credential="wrong", authority=server.authority, instance_discovery=False,
        http_client=server.session())
    assert app.acquire_token_by_refresh_token(world.refresh_token, scopes=SCOPES)["error"] == "invalid_client"


def test_graph_needs_a_valid_bearer_token(server, graph):
    session = server.session()
    anonymous = session.get(server.url + "/me", timeout=10)
    assert anonymous.status_code == 401
    assert anonymous.json()["error"]["code"] == "InvalidAuthenticationToken"
    assert graph("GET", "/me").json()["mail"] == "user@example.com"
    server.world.expire_access_tokens()
    assert graph("GET", "/me").status_code == 401


# ----------------------------------------------------------------- folders
def test_folders_page_with_top_and_children_and_hidden(server, graph):
    world = server.world
    parent = world.add_folder("Projects")
    children = {world.add_folder(f"P{n}", parent) for n in range(7)}
    hidden = world.add_folder("Sync Issues", hidden=True)

    pages, _ = follow(graph, "/me/mailFolders?$top=3&includeHiddenFolders=false")
    top_level = [folder for page in pages for folder in page]
    assert len(pages) == 3 and all(len(page) <= 3 for page in pages)
    ids = {folder["id"] for folder in top_level}
    assert world.well_known("inbox") in ids and parent in ids and hidden not in ids
    projects = next(folder for folder in top_level if folder["id"] == parent)
    assert projects["childFolderCount"] == 7 and projects["parentFolderId"] == world.root_id

    pages, _ = follow(graph, f"/me/mailFolders/{parent}/childFolders?$top=5")
    assert {folder["id"] for page in pages for folder in page} == children
    shown = follow(graph, "/me/mailFolders?$top=250&includeHiddenFolders=true")[0][0]
    assert hidden in {folder["id"] for folder in shown}

    inbox = graph("GET", "/me/mailFolders/inbox").json()
    assert inbox["id"] == world.well_known("inbox") and inbox["displayName"] == "Inbox"
    world.rename_folder(parent, "Work")
    world.move_folder(parent, world.well_known("inbox"))
    assert graph("GET", f"/me/mailFolders/{parent}").json()["displayName"] == "Work"
    assert graph("GET", "/me/mailFolders/inbox").json()["childFolderCount"] == 1
    world.delete_folder(parent)
    assert graph("GET", f"/me/mailFolders/{parent}").status_code == 404


# ---------------------------------------------------------------- messages
def test_messages_page_newest_first_with_select(server, graph):
    world = server.world
    inbox = world.well_known("inbox")
    ids = [world.add_message(inbox, subject=f"m{n}", body=f"body {n}") for n in range(12)]
    reply = world.add_message(inbox, subject="Re: m0", in_reply_to="<a@x>", references="<a@x>",
                              received="2024-01-01T00:00:00Z")

    target = "/me/mailFolders/inbox/messages?$orderby=receivedDateTime desc&$select=subject,isRead,flag"
    first = graph("GET", target, headers={"Prefer": 'odata.maxpagesize=5, IdType="ImmutableId"'})
    assert "odata.maxpagesize=5" in first.headers["Preference-Applied"]
    pages, _ = follow(graph, target, headers={"Prefer": "odata.maxpagesize=5"})
    listed = [item for page in pages for item in page]
    assert [len(page) for page in pages] == [5, 5, 3]
    assert [item["id"] for item in listed] == [*reversed(ids), reply]
    assert set(listed[0]) == {"@odata.etag", "id", "subject", "isRead", "flag"}
    assert listed[0]["flag"] == {"flagStatus": "notFlagged"}

    full = graph("GET", f"/me/messages/{reply}").json()
    assert "internetMessageHeaders" not in full and full["parentFolderId"] == inbox
    assert full["from"]["emailAddress"]["address"] == "a@example.com"
    headers = graph("GET", f"/me/messages/{reply}?$select=internetMessageHeaders").json()["internetMessageHeaders"]
    assert {"name": "In-Reply-To", "value": "<a@x>"} in headers
    bad = graph("GET", "/me/mailFolders/inbox/messages?$select=nonsense")
    assert bad.status_code == 400


def test_mime_attachments_size_and_send_mail(server, graph):
    world = server.world
    msg_id = world.add_message("inbox", subject="Report", body="see attached",
                               attachments=[("a.txt", "text/plain", b"hello")])
    raw = graph("GET", f"/me/messages/{msg_id}/$value").content
    parsed = email.message_from_bytes(raw)
    assert parsed["Subject"] == "Report"
    files = graph("GET", f"/me/messages/{msg_id}/attachments").json()["value"]
    assert base64.b64decode(files[0]["contentBytes"]) == b"hello" and files[0]["name"] == "a.txt"
    sized = graph("GET", f"/me/messages/{msg_id}?$select=hasAttachments&$expand=singleValueExtendedProperties"
                         "($filter=id eq 'Integer 0x0E08')").json()
    assert sized["hasAttachments"] is True
    assert int(sized["singleValueExtendedProperties"][0]["value"]) == len(raw)

    sent = graph("POST", "/me/sendMail", json={"message": {
        "subject": "Hi", "body": {"contentType": "Text", "content": "hello"},
        "toRecipients": [{"emailAddress": {"address": "b@example.com"}}]}})
    assert sent.status_code == 202
    mime = base64.b64encode(b"From: user@example.com\r\nTo: c@example.com\r\nSubject: Raw\r\n\r\nbody\r\n")
    assert graph("POST", "/me/sendMail", data=mime, headers={"Content-Type": "text/plain"}).status_code == 202
    subjects = {world.message_json(m)["subject"] for m in world.message_ids("sentitems")}
    assert subjects == {"Hi", "Raw"}


# ------------------------------------------------------------------- delta
def test_delta_round_trip_with_moves_deletes_and_latest(server, graph):
    world = server.world
    inbox, archive = world.well_known("inbox"), world.well_known("archive")
    ids = [world.add_message(inbox, subject=f"m{n}") for n in range(7)]
    elsewhere = world.add_message(archive, subject="comes in")
    prefer = {"Prefer": "odata.maxpagesize=3"}

    pages, last = follow(graph, f"/me/mailFolders/{inbox}/messages/delta?$select=subject,isRead,flag",
                         headers=prefer)
    assert [len(page) for page in pages] == [3, 3, 1]
    assert {item["id"] for page in pages for item in page} == set(ids)
    assert set(pages[0][0]) == {"@odata.type", "@odata.etag", "id", "subject", "isRead", "flag"}
    inbox_link = last["@odata.deltaLink"]
    archive_link = follow(graph, f"/me/mailFolders/{archive}/messages/delta")[1]["@odata.deltaLink"]

    world.update(ids[0], is_read=True, flagged=True)
    world.move(ids[1], archive)
    world.delete(ids[2])
    world.move(elsewhere, inbox)
    new = world.add_message(inbox, subject="new")

    pages, last = follow(graph, inbox_link, headers=prefer)
    changes = {item["id"]: item for page in pages for item in page}
    assert set(changes) == {ids[0], ids[1], ids[2], elsewhere, new}
    assert changes[ids[0]]["isRead"] is True and changes[ids[0]]["flag"]["flagStatus"] == "flagged"
    assert changes[ids[1]]["@removed"] == {"reason": "deleted"}
    assert changes[ids[2]]["@removed"] == {"reason": "deleted"}
    assert changes[elsewhere]["subject"] == "comes in"
    assert "select" not in last["@odata.deltaLink"]

    moved = {item["id"]: item for page in follow(graph, archive_link)[0] for item in page}
    assert moved[ids[1]]["parentFolderId"] == archive and moved[elsewhere]["@removed"]
    assert graph("GET", f"/me/messages/{ids[1]}").json()["parentFolderId"] == archive

    quiet = graph("GET", last["@odata.deltaLink"]).json()
    assert quiet["value"] == [] and "@odata.deltaLink" in quiet

    world.sparse_delta_updates = True
    world.update(ids[3], is_read=True)
    sparse = graph("GET", last["@odata.deltaLink"]).json()["value"]
    assert set(sparse[0]) == {"@odata.type", "@odata.etag", "id", "isRead", "flag"}

    latest = graph("GET", f"/me/mailFolders/{inbox}/messages/delta?$deltatoken=latest").json()
    assert latest["value"] == []
    later = world.add_message(inbox, subject="later")
    assert [item["id"] for item in graph("GET", latest["@odata.deltaLink"]).json()["value"]] == [later]


@pytest.mark.parametrize("kind, code", [("410", "SyncStateNotFound"), ("syncStateNotFound", "syncStateNotFound"),
                                        ("resyncRequired", "resyncRequired")])
def test_expired_delta_tokens_answer_410(server, graph, kind, code):
    world = server.world
    world.add_message("inbox", subject="x")
    link = follow(graph, "/me/mailFolders/inbox/messages/delta")[1]["@odata.deltaLink"]
    world.expire_delta(world.well_known("inbox"), kind)
    gone = graph("GET", link)
    assert gone.status_code == 410 and gone.json()["error"]["code"] == code
    assert graph("GET", "/me/mailFolders/inbox/messages/delta").status_code == 200


# ---------------------------------------------------- batch, faults, limits
def test_batch_runs_steps_and_a_fault_hits_one_step(server, graph):
    world = server.world
    ids = [world.add_message("inbox", subject=f"b{n}") for n in range(3)]
    world.fail_next(f"/me/messages/{ids[1]}", 503, retry_after=2)
    steps = [{"id": str(n), "method": "GET", "url": f"/me/messages/{msg}?$select=subject", "headers": IMMUTABLE}
             for n, msg in enumerate(ids)]
    steps.append({"id": "mime", "method": "GET", "url": f"/me/messages/{ids[0]}/$value"})
    answer = graph("POST", "/$batch", json={"requests": steps})
    assert answer.status_code == 200
    by_id = {step["id"]: step for step in answer.json()["responses"]}
    assert by_id["0"]["status"] == 200 and by_id["0"]["body"]["subject"] == "b0"
    assert by_id["1"]["status"] == 503 and by_id["1"]["headers"]["Retry-After"] == "2"
    assert by_id["1"]["body"]["error"]["code"] == "ServiceUnavailable"
    assert b"Subject: b0" in base64.b64decode(by_id["mime"]["body"])
    assert world.immutable_id["step_with"] == 3 and world.immutable_id["step_without"] == 1
    assert world.requests["GET /me/messages/{id}"] == 3

    too_many = [{"id": str(n), "method": "GET", "url": "/me"} for n in range(21)]
    assert graph("POST", "/$batch", json={"requests": too_many}).status_code == 400


def test_more_concurrent_requests_than_allowed_get_429_mailbox_concurrency(server):
    world = server.world
    world.latency, world.max_concurrency = 0.4, 4
    token = world.issue_access_token()
    start = threading.Barrier(6)
    answers = []

    def hit():
        session = server.session()
        start.wait()
        answers.append(session.get(server.url + "/me", headers={"Authorization": f"Bearer {token}"}, timeout=10))

    threads = [threading.Thread(target=hit) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    refused = [answer for answer in answers if answer.status_code == 429]
    assert refused and len(refused) + sum(answer.status_code == 200 for answer in answers) == 6
    assert refused[0].headers["Retry-After"] == "1"
    assert refused[0].json()["error"]["code"] == "ApplicationThrottled"
    assert "MailboxConcurrency" in refused[0].json()["error"]["message"]
    assert world.peak_concurrency > 4 and world.throttled == len(refused)


def test_fail_next_and_slow_next_are_consumed(server, graph):
    world = server.world
    world.fail_next(r"/me/mailFolders$", 429, code="TooManyRequests", retry_after=3, count=2)
    world.slow_next(r"^/me$", 0.2)
    assert graph("GET", "/me/mailFolders").headers["Retry-After"] == "3"
    assert graph("GET", "/me/mailFolders").status_code == 429
    assert graph("GET", "/me/mailFolders").status_code == 200
    assert graph("GET", "/me").elapsed.total_seconds() >= 0.2
    assert world.immutable_id["with"] == 4
