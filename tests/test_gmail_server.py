"""The fake Gmail server (harness/gmail_server.py) meets the real google-api-python-client over real sockets.

What the Gmail adapter relies on is shown here with the library the adapter
uses, built the way it builds it: listing, metadata, paging while mail
arrives, history, batches, quota, tokens.
"""

import base64
import datetime as dt
import inspect
import io
import json
import time

import google_auth_httplib2
import httplib2
import pytest
from google.auth.exceptions import RefreshError
from google.oauth2.credentials import Credentials
from googleapiclient import discovery
from googleapiclient.errors import HttpError
from googleapiclient.http import BatchHttpRequest, MediaIoBaseUpload

from .harness.dovecot import make_message
from .harness.gmail_server import GmailServer

BASE = dt.datetime(2024, 5, 1, 12, 0)


@pytest.fixture
def server():
    with GmailServer() as running:
        yield running


def gmail(server, token=None):
    """A Gmail service as the adapter builds it; a 401 is answered, not refreshed (no refresh token here)."""
    credentials = Credentials(token=token or server.world.issue_access_token())
    http = google_auth_httplib2.AuthorizedHttp(credentials, http=httplib2.Http(timeout=10), refresh_status_codes=())
    return discovery.build("gmail", "v1", http=http, static_discovery=True,
                           client_options={"api_endpoint": server.url}, cache_discovery=False)


def batch(server, callback=None):
    return BatchHttpRequest(callback=callback, batch_uri=server.url + "/batch/gmail/v1")


def seed(world, count, *, labels=("INBOX", "UNREAD"), start=0):
    return [
        world.add_message(make_message(subject=f"Message {n}", body=f"Body of message {n}.\n"),
                          labels, internal_date=BASE + dt.timedelta(minutes=n))
        for n in range(start, start + count)
    ]


def error_of(excinfo) -> dict:
    return json.loads(excinfo.value.content)["error"]


def test_profile_labels_and_message_formats(server):
    world = server.world
    work = world.add_label("Work/Projects")
    raw = make_message(subject="Caf\u00e9 it's", from_="Alice <alice@example.com>", body="Hello it's me.\n",
                       message_id="<m1@example.com>", html="<p>Hello</p>",
                       attachments=[("a.txt", b"attached", "text/plain")])
    msg_id = world.add_message(raw, ("INBOX", work), internal_date=BASE)
    service = gmail(server).users()

    profile = service.getProfile(userId="me").execute()
    assert profile == {"emailAddress": "user@example.com", "messagesTotal": 1, "threadsTotal": 1,
                       "historyId": str(world.history_id)}
    labels = {label["id"]: label for label in service.labels().list(userId="me").execute()["labels"]}
    assert labels["INBOX"]["type"] == "system" and "CATEGORY_FORUMS" in labels
    assert labels[work] == {"id": work, "name": "Work/Projects", "type": "user",
                            "messageListVisibility": "show", "labelListVisibility": "labelShow"}
    assert service.labels().get(userId="me", id=work).execute()["messagesTotal"] == 1

    meta = service.messages().get(userId="me", id=msg_id, format="metadata",
                                  metadataHeaders=["subject", "FROM", "Message-ID"]).execute()
    assert len(msg_id) == 16 and meta["id"] == msg_id and meta["threadId"] == msg_id
    assert meta["labelIds"] == sorted(["INBOX", work])
    assert meta["internalDate"] == str(int(BASE.replace(tzinfo=dt.timezone.utc).timestamp() * 1000))
    assert meta["sizeEstimate"] == len(raw)
    assert meta["snippet"] == "Hello it&#39;s me."  # HTML-escaped, as Gmail's snippets are
    assert [(h["name"], h["value"]) for h in meta["payload"]["headers"]] == [
        ("From", "Alice <alice@example.com>"), ("Subject", "Caf\u00e9 it's"), ("Message-ID", "<m1@example.com>")]

    full = service.messages().get(userId="me", id=msg_id, format="full").execute()["payload"]
    assert full["mimeType"] == "multipart/mixed" and [p["partId"] for p in full["parts"]] == ["0", "1"]
    assert [p["mimeType"] for p in full["parts"][0]["parts"]] == ["text/plain", "text/html"]
    attachment = full["parts"][1]
    assert attachment["filename"] == "a.txt" and base64.urlsafe_b64decode(attachment["body"]["data"]) == b"attached"

    answer = service.messages().get(userId="me", id=msg_id, format="raw").execute()
    assert base64.urlsafe_b64decode(answer["raw"]) == raw and "payload" not in answer

    with pytest.raises(HttpError) as missing:
        service.messages().get(userId="me", id="0" * 16).execute()
    assert missing.value.resp.status == 404
    assert error_of(missing) == {"code": 404, "message": "Requested entity was not found.", "status": "NOT_FOUND",
                                 "errors": [{"message": "Requested entity was not found.", "domain": "global",
                                             "reason": "notFound"}]}


def test_listing_filters_and_pages_stay_stable_while_mail_arrives(server):
    world = server.world
    ids = seed(world, 25)
    spam = world.add_message(make_message(subject="spam"), ("SPAM",), internal_date=BASE)
    world.modify(ids[3], add=("STARRED",))
    world.trash(ids[4])
    messages = gmail(server).users().messages()

    assert messages.list(userId="me", labelIds=["INBOX", "STARRED"]).execute()["messages"] == [
        {"id": ids[3], "threadId": ids[3]}]
    everything = [m["id"] for m in messages.list(userId="me", includeSpamTrash=True).execute()["messages"]]
    assert spam in everything and ids[4] in everything
    assert messages.list(userId="me", labelIds=["CHAT"]).execute() == {"resultSizeEstimate": 0}

    seen, token, arrived = [], None, 0
    while True:
        page = messages.list(userId="me", maxResults=10, pageToken=token).execute()
        seen += [m["id"] for m in page["messages"]]
        token = page.get("nextPageToken")
        if not token:
            break
        seed(world, 3, start=100 + arrived)  # newer mail lands on page one, not on the pages still to come
        arrived += 3
    expected = [msg_id for msg_id in reversed(ids) if msg_id != ids[4]]
    assert seen == expected


def test_ten_thousand_messages_page_by_bisect(server):
    world = server.world
    for n in range(10_000):
        world.add_message(b"Subject: x\r\n\r\nx\r\n", ("INBOX",), internal_date=1_700_000_000_000 + n // 3)
    messages = gmail(server).users().messages()
    started, seen, token = time.monotonic(), [], None
    while True:
        page = messages.list(userId="me", labelIds=["INBOX"], maxResults=500, pageToken=token).execute()
        seen += [m["id"] for m in page["messages"]]
        if not (token := page.get("nextPageToken")):
            break
    assert len(seen) == 10_000 and seen == sorted(world.message_ids("INBOX"), reverse=True)
    assert time.monotonic() - started < 5


def test_history_records_every_change(server):
    world = server.world
    history = gmail(server).users().history()
    start = world.history_id
    label = world.add_label("Clients")
    first = world.add_message(make_message(subject="one"), ("INBOX", "UNREAD"))
    world.modify(first, add=("STARRED", label), remove=("UNREAD",))
    second = world.add_message(make_message(subject="two"), (label,))
    world.delete(second)
    world.rename_label(label, "Customers")  # no history, as in Gmail
    world.delete_label(label)

    answer = history.list(userId="me", startHistoryId=str(start)).execute()
    assert answer["historyId"] == str(world.history_id)
    kinds = [next(key for key in record if key not in ("id", "messages")) for record in answer["history"]]
    assert kinds == ["messagesAdded", "labelsAdded", "labelsRemoved", "messagesAdded", "messagesDeleted",
                     "labelsRemoved"]
    ids = [int(record["id"]) for record in answer["history"]]
    assert ids == sorted(ids) and ids[0] > start
    added, label_added = answer["history"][0], answer["history"][1]
    assert added["messages"] == [{"id": first, "threadId": first}]
    assert added["messagesAdded"] == [{"message": {"id": first, "threadId": first, "labelIds": ["INBOX", "UNREAD"]}}]
    assert label_added["labelsAdded"] == [{"message": {"id": first, "threadId": first,
                                                       "labelIds": sorted(["INBOX", "STARRED", label])},
                                           "labelIds": sorted(["STARRED", label])}]
    assert answer["history"][-1]["labelsRemoved"] == [{"message": {"id": first, "threadId": first,
                                                                   "labelIds": ["INBOX", "STARRED"]},
                                                       "labelIds": [label]}]

    deleted = history.list(userId="me", startHistoryId=str(start), historyTypes=["messageDeleted"]).execute()
    assert [r["messagesDeleted"][0]["message"]["id"] for r in deleted["history"]] == [second]
    starred = history.list(userId="me", startHistoryId=str(start), labelId="STARRED").execute()
    assert {r["messages"][0]["id"] for r in starred["history"]} == {first}

    paged, token = [], None
    while True:
        page = history.list(userId="me", startHistoryId=str(start), maxResults=2, pageToken=token).execute()
        paged += page.get("history", [])
        if not (token := page.get("nextPageToken")):
            break
    assert paged == answer["history"]
    assert history.list(userId="me", startHistoryId=str(world.history_id)).execute() == {
        "historyId": str(world.history_id)}


def test_expired_history_answers_404(server):
    world = server.world
    start = world.history_id
    seed(world, 2)
    world.expire_history()
    history = gmail(server).users().history()
    with pytest.raises(HttpError) as expired:
        history.list(userId="me", startHistoryId=str(start)).execute()
    assert expired.value.resp.status == 404 and error_of(expired)["message"] == "Requested entity was not found."
    assert history.list(userId="me", startHistoryId=str(world.history_id)).execute() == {
        "historyId": str(world.history_id)}


def test_batch_answers_each_part_and_one_fails_alone(server):
    world = server.world
    ids = seed(world, 5)
    world.fail_batch_item(ids[2], status=500)
    service = gmail(server)
    answers = {}
    request = batch(server, lambda request_id, response, error: answers.update({request_id: (response, error)}))
    for msg_id in ids:
        request.add(service.users().messages().get(userId="me", id=msg_id, format="metadata",
                                                   metadataHeaders=["Subject"]), request_id=msg_id)
    request.execute()

    failed = {msg_id for msg_id, (_, error) in answers.items() if error is not None}
    assert failed == {ids[2]} and answers[ids[2]][1].resp.status == 500
    assert answers[ids[0]][0]["payload"]["headers"] == [{"name": "Subject", "value": "Message 0"}]
    assert world.calls["batch"] == 1 and world.calls["gmail.users.messages.get"] == 5
    assert world.units_spent == 20  # a failed part spends nothing

    again = BatchHttpRequest(batch_uri=server.url + "/batch")  # Google's generic path works too
    again.add(service.users().messages().get(userId="me", id=ids[2]), callback=lambda *a: answers.update(r=a))
    again.execute()
    assert answers["r"][2] is None and answers["r"][1]["id"] == ids[2]

    too_many = batch(server)
    for n in range(101):
        too_many.add(service.users().labels().get(userId="me", id="INBOX"), request_id=str(n))
    with pytest.raises(HttpError) as refused:
        too_many.execute()
    assert refused.value.resp.status == 400


def test_batch_without_batch_uri_goes_to_google():
    """google-api-python-client#1107: new_batch_http_request() ignores api_endpoint and has no batch_uri
    parameter (2.202), so the adapter must build BatchHttpRequest(batch_uri=endpoint + "/batch/gmail/v1")."""
    service = discovery.build("gmail", "v1", credentials=Credentials(token="unused"), static_discovery=True,
                              client_options={"api_endpoint": "http://127.0.0.1:9"}, cache_discovery=False)
    assert service.new_batch_http_request()._batch_uri.startswith("https://gmail.googleapis.com")
    assert "batch_uri" not in inspect.signature(service.new_batch_http_request).parameters
    # The same trap for uploads: media_body sends go to https whatever the endpoint says; send {"raw": ...}.
    upload = service.users().messages().send(
        userId="me", body={}, media_body=MediaIoBaseUpload(io.BytesIO(b"Subject: x\r\n\r\nx"), "message/rfc822"))
    assert upload.uri.startswith("https://127.0.0.1:9/upload/")


def test_quota_refuses_past_the_limit(server):
    world = server.world
    world.quota_per_minute = 12
    messages = gmail(server).users().messages()
    messages.list(userId="me").execute()
    messages.list(userId="me").execute()
    with pytest.raises(HttpError) as refused:
        messages.list(userId="me").execute()
    assert refused.value.resp.status == 403
    assert error_of(refused)["errors"][0]["reason"] == "rateLimitExceeded"
    assert error_of(refused)["errors"][0]["domain"] == "usageLimits"
    assert (world.units_spent, world.refusals) == (10, 1)

    world.quota_error = "429"
    with pytest.raises(HttpError) as exhausted:
        messages.list(userId="me").execute()
    assert exhausted.value.resp.status == 429 and error_of(exhausted)["status"] == "RESOURCE_EXHAUSTED"

    service = gmail(server)
    answers = []
    request = batch(server, lambda _id, response, error: answers.append(error and error.resp.status))
    for _ in range(3):
        request.add(service.users().labels().get(userId="me", id="INBOX"))
    request.execute()
    assert answers == [None, None, 429]  # 10 + 1 + 1 units fit, the third part does not


def test_faults_and_send(server):
    world = server.world
    service = gmail(server).users()
    world.fail_next("gmail.users.messages.list", 503, retry_after=2)
    with pytest.raises(HttpError) as unavailable:
        service.messages().list(userId="me").execute()
    assert unavailable.value.resp.status == 503 and unavailable.value.resp["retry-after"] == "2"
    assert service.messages().list(userId="me").execute() == {"resultSizeEstimate": 0}

    world.fail_next("gmail.users.history.list", 403, reason="userRateLimitExceeded")
    with pytest.raises(HttpError) as limited:
        service.history().list(userId="me", startHistoryId="1").execute()
    assert error_of(limited)["errors"][0]["reason"] == "userRateLimitExceeded"

    world.slow_next("gmail.users.getProfile", 0.3)
    started = time.monotonic()
    service.getProfile(userId="me").execute()
    assert time.monotonic() - started >= 0.3

    start = world.history_id
    raw = make_message(subject="Sent by me")
    sent = service.messages().send(userId="me", body={"raw": base64.urlsafe_b64encode(raw).decode()}).execute()
    assert sent["labelIds"] == ["SENT"] and world.raw_of(sent["id"]) == raw
    added = service.history().list(userId="me", startHistoryId=str(start)).execute()["history"]
    assert added[0]["messagesAdded"][0]["message"]["id"] == sent["id"]
    assert world.calls["gmail.users.messages.send"] == 1 and world.units_spent >= 100


def test_token_endpoint_rotation_and_invalid_grant(server):
    world = server.world
    transport = google_auth_httplib2.Request(httplib2.Http(timeout=10))
    credentials = Credentials(token=None, refresh_token=world.refresh_token, token_uri=server.token_url,
                              client_id="client", client_secret="secret")
    credentials.refresh(transport)
    assert gmail(server, credentials.token).users().getProfile(userId="me").execute()["emailAddress"]

    world.rotate_refresh_tokens = True
    old = world.refresh_token
    credentials.refresh(transport)
    assert credentials.refresh_token == world.refresh_token != old
    stale = Credentials(token=None, refresh_token=old, token_uri=server.token_url, client_id="c", client_secret="s")
    with pytest.raises(RefreshError, match="invalid_grant"):
        stale.refresh(transport)

    world.revoke_refresh_token()
    with pytest.raises(RefreshError, match="Token has been expired or revoked"):
        credentials.refresh(transport)
    assert world.calls["token"] == 4


def test_expired_access_tokens_answer_401(server):
    world = server.world
    service = gmail(server).users()
    service.getProfile(userId="me").execute()
    world.expire_access_tokens()
    with pytest.raises(HttpError) as refused:
        service.getProfile(userId="me").execute()
    assert refused.value.resp.status == 401 and error_of(refused)["status"] == "UNAUTHENTICATED"
    assert gmail(server).users().getProfile(userId="me").execute()["historyId"] == str(world.history_id)
