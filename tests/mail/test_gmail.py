"""The Gmail source against recorded API shapes, with no network.

Requests go to googleapiclient's HttpMockSequence; the client is built from
the discovery document bundled with the package. Token refreshes go to an
OAuth endpoint served on 127.0.0.1.
"""

from __future__ import annotations

import base64
import json
import logging
import os
import stat

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from googleapiclient.http import HttpMockSequence

from core.gmail import SCOPES, build_gmail_service, load_credentials
from core.mail import poll_mailbox_once
from core.mail.gmail_source import HISTORY_KEY, GmailMailbox, load_cursor, save_cursor
from core.models import MailMessage, Task
from tests.conftest import ASSIGNEE, CORPUS, CREATOR, MAILBOX
from tests.mail.conftest import make_email, write_user_token

GMAIL_CORPUS = CORPUS / "gmail"
OK = {"status": "200", "content-type": "application/json"}


def ok(body: dict) -> tuple[dict, str]:
    return OK, json.dumps(body)


def error(status: int, reason: str = "") -> tuple[dict, str]:
    body = {"error": {"code": status, "message": reason or "error", "errors": []}}
    if reason:
        body["error"]["errors"].append({"reason": reason})
    return {"status": str(status), "content-type": "application/json"}, json.dumps(body)


def raw_message(gmail_id: str, thread_id: str, raw: bytes) -> tuple[dict, str]:
    encoded = base64.urlsafe_b64encode(raw).decode().rstrip("=")
    return ok(
        {"id": gmail_id, "threadId": thread_id, "labelIds": ["INBOX"], "raw": encoded}
    )


def history(
    *ids: str, history_id: str, page_token: str | None = None
) -> tuple[dict, str]:
    body: dict = {
        "history": [
            {"id": str(n), "messagesAdded": [{"message": {"id": gid, "threadId": "t"}}]}
            for n, gid in enumerate(ids, start=1)
        ],
        "historyId": history_id,
    }
    if page_token:
        body["nextPageToken"] = page_token
    return ok(body)


def gmail_mailbox(
    settings, responses, delays=None
) -> tuple[GmailMailbox, HttpMockSequence]:
    http = HttpMockSequence(responses)
    service = build_gmail_service(settings, http=http)
    sleep = delays.append if delays is not None else _no_sleep
    return GmailMailbox(settings, service=service, sleep=sleep), http


def _no_sleep(seconds: float) -> None:
    raise AssertionError(f"unexpected retry sleep of {seconds} s")


def uris(http: HttpMockSequence) -> list[str]:
    return [call[0] for call in http.request_sequence]


FIRST = make_email(message_id="<g1@client.example.com>", subject="VPN drops every hour")
# Gmail threads this reply by its threadId; it carries no reply headers.
SECOND = make_email(
    sender=ASSIGNEE, message_id="<g2@client.example.com>", body="On it."
)


def test_build_uses_bundled_discovery(settings):
    http = HttpMockSequence([ok({"emailAddress": MAILBOX, "historyId": "1"})])

    service = build_gmail_service(settings, http=http)
    profile = service.users().getProfile(userId="me").execute()

    assert profile["historyId"] == "1"
    assert uris(http) == [
        "https://gmail.googleapis.com/gmail/v1/users/me/profile?alt=json"
    ]


def test_full_sync_without_cursor(db, settings):
    mailbox, http = gmail_mailbox(
        settings,
        [
            ok({"emailAddress": MAILBOX, "historyId": "1000"}),
            ok(
                {
                    "messages": [
                        {"id": "m2", "threadId": "t1"},
                        {"id": "m1", "threadId": "t1"},
                    ]
                }
            ),
            raw_message("m1", "t1", FIRST),
            raw_message("m2", "t1", SECOND),
        ],
    )

    handled = poll_mailbox_once(settings, mailbox=mailbox)

    assert handled == 2
    task = Task.get()
    assert Task.select().count() == 1
    assert task.thread_id == "t1"
    assert task.subject == "VPN drops every hour"
    assert task.creator_email == CREATOR
    assert task.latest_message_id == "<g2@client.example.com>"
    assert load_cursor() == "1000"
    calls = uris(http)
    assert "labelIds=INBOX" in calls[1]
    assert "/messages/m1?format=raw" in calls[2]
    assert "/messages/m2?format=raw" in calls[3]
    assert (
        MailMessage.get(MailMessage.message_id == "<g1@client.example.com>").source_id
        == "gmail:m1"
    )


def test_gmail_tasks_listed_by_api(db, settings, client, as_creator):
    mailbox, _ = gmail_mailbox(
        settings,
        [
            ok({"historyId": "7"}),
            ok({"messages": [{"id": "m1", "threadId": "t1"}]}),
            raw_message("m1", "t1", FIRST),
        ],
    )
    poll_mailbox_once(settings, mailbox=mailbox)

    response = client.get("/tasks", headers=as_creator)

    assert response.status_code == 200
    [task] = response.get_json()["tasks"]
    assert task["thread_id"] == "t1"
    assert task["subject"] == "VPN drops every hour"
    assert task["assigned_to"] == ASSIGNEE


def test_full_sync_is_bounded(db, make_settings, app):
    settings = make_settings(gmail_full_sync_limit=1)
    mailbox, http = gmail_mailbox(
        settings,
        [
            ok({"historyId": "50"}),
            ok({"messages": [{"id": "m1", "threadId": "t1"}], "nextPageToken": "more"}),
            raw_message("m1", "t1", FIRST),
        ],
    )

    handled = poll_mailbox_once(settings, mailbox=mailbox)

    assert handled == 1
    assert "maxResults=1" in uris(http)[1]
    assert len(http.request_sequence) == 3
    assert load_cursor() == "50"


def test_history_pages_advance_cursor(db, settings):
    save_cursor("1000")
    reply = make_email(
        sender=ASSIGNEE,
        message_id="<g4@client.example.com>",
        in_reply_to="<g3@client.example.com>",
    )
    mailbox, http = gmail_mailbox(
        settings,
        [
            history("m3", history_id="1005", page_token="page-2"),
            history("m4", "m3", history_id="1010"),
            raw_message("m3", "t3", make_email(message_id="<g3@client.example.com>")),
            raw_message("m4", "t4", reply),
        ],
    )

    handled = poll_mailbox_once(settings, mailbox=mailbox)

    assert handled == 2
    calls = uris(http)
    assert "startHistoryId=1000" in calls[0]
    assert "historyTypes=messageAdded" in calls[0]
    assert "labelId=INBOX" in calls[0]
    assert "pageToken=page-2" in calls[1]
    assert load_cursor() == "1010"
    # The reply sits in another Gmail thread but names the first message.
    assert Task.select().count() == 1
    assert Task.get().latest_message_id == "<g4@client.example.com>"


def test_history_404_falls_back_once(db, settings, caplog):
    save_cursor("5")
    mailbox, http = gmail_mailbox(
        settings,
        [
            error(404, "notFound"),
            ok({"historyId": "2000"}),
            ok({"messages": [{"id": "m1", "threadId": "t1"}]}),
            raw_message("m1", "t1", FIRST),
        ],
    )

    handled = poll_mailbox_once(settings, mailbox=mailbox)

    assert handled == 1
    assert len(http.request_sequence) == 4
    assert load_cursor() == "2000"
    assert any("too old" in r.getMessage() for r in caplog.records)

    mailbox, http = gmail_mailbox(settings, [ok({"historyId": "2000"})])
    assert poll_mailbox_once(settings, mailbox=mailbox) == 0
    assert "startHistoryId=2000" in uris(http)[0]
    assert len(http.request_sequence) == 1


def test_retries_429_and_5xx_with_backoff(db, settings):
    save_cursor("10")
    delays: list[float] = []
    mailbox, http = gmail_mailbox(
        settings,
        [
            error(429, "rateLimitExceeded"),
            error(503),
            history("m1", history_id="11"),
            error(500),
            raw_message("m1", "t1", FIRST),
        ],
        delays,
    )

    handled = poll_mailbox_once(settings, mailbox=mailbox)

    assert handled == 1
    assert len(delays) == 3
    assert 1 <= delays[0] <= 2
    assert 2 <= delays[1] <= 4
    assert load_cursor() == "11"


def test_permanent_error_keeps_cursor(db, settings, caplog):
    save_cursor("10")
    mailbox, _ = gmail_mailbox(settings, [error(400, "invalidArgument")])

    handled = poll_mailbox_once(settings, mailbox=mailbox)

    assert handled == 0
    assert load_cursor() == "10"
    assert any(r.levelname == "ERROR" for r in caplog.records)


def test_stop_between_fetch_and_commit(db, settings):
    save_cursor("100")
    mailbox, _ = gmail_mailbox(
        settings,
        [
            history("m1", "m2", history_id="120"),
            raw_message("m1", "t1", FIRST),
            error(400, "failedPrecondition"),
        ],
    )
    # The poll stores m1 and stops while fetching m2: the cursor must not move.
    poll_mailbox_once(settings, mailbox=mailbox)
    assert load_cursor() == "100"
    assert Task.select().count() == 1

    mailbox, _ = gmail_mailbox(
        settings,
        [
            history("m1", "m2", history_id="120"),
            raw_message("m1", "t1", FIRST),
            raw_message(
                "m2", "t2", make_email(sender=ASSIGNEE, subject="Badge reader")
            ),
        ],
    )
    handled = poll_mailbox_once(settings, mailbox=mailbox)

    assert handled == 2
    assert Task.select().count() == 2
    assert MailMessage.select().count() == 2
    assert load_cursor() == "120"


def test_deleted_message_is_skipped(db, settings):
    save_cursor("1")
    mailbox, _ = gmail_mailbox(
        settings,
        [
            history("gone", "m1", history_id="3"),
            error(404, "notFound"),
            raw_message("m1", "t1", FIRST),
        ],
    )

    handled = poll_mailbox_once(settings, mailbox=mailbox)

    assert handled == 1
    assert load_cursor() == "3"


# Real Gmail API shapes


def full_to_raw(payload: dict) -> bytes:
    """Rebuild the RFC 5322 bytes of a ``format=full`` payload."""
    headers = [
        (h["name"], h["value"])
        for h in payload.get("headers", [])
        if h["name"].lower() != "content-transfer-encoding"
    ]
    if not any(name.lower() == "content-type" for name, _ in headers):
        headers.append(("Content-Type", payload["mimeType"]))
    head = "".join(f"{name}: {value}\r\n" for name, value in headers)
    if payload["mimeType"].startswith("multipart/"):
        content_type = next(v for n, v in headers if n.lower() == "content-type")
        boundary = content_type.split("boundary=", 1)[1].strip('"')
        body = b"".join(
            f"--{boundary}\r\n".encode() + full_to_raw(part) + b"\r\n"
            for part in payload["parts"]
        )
        return head.encode() + b"\r\n" + body + f"--{boundary}--\r\n".encode()
    data = payload["body"].get("data", "")
    content = base64.urlsafe_b64decode(data + "=" * (-len(data) % 4))
    encoded = base64.encodebytes(content)
    return (head + "Content-Transfer-Encoding: base64\r\n\r\n").encode() + encoded


def corpus_response(name: str) -> tuple[dict, bytes]:
    shape = json.loads((GMAIL_CORPUS / name).read_text())
    message = shape.get("message", shape)  # drafts.get wraps the message
    return message, full_to_raw(message["payload"])


GMAIL_SHAPES = {
    "messages.get.full.plain-text.json": ("The actual message text goes here", []),
    "messages.get.full.multipart-alternative.json": ("wow", []),
    "messages.get.full.multipart-mixed-2-jpeg-attachments.json": (
        "",
        [("a3Ln90e_460s.jpg", "image/jpeg"), ("feelthebern.jpg", "image/jpeg")],
    ),
    "messages.get.full.multipart-mixed-text-attachment.json": (
        "",
        [("a_text_file.txt", "text/plain")],
    ),
    "drafts.get.full.multipart-alternative.json": ("", []),
}


@pytest.mark.parametrize("name", sorted(GMAIL_SHAPES))
def test_gmail_corpus_shapes(db, settings, name):
    message, raw = corpus_response(name)
    text, attachments = GMAIL_SHAPES[name]
    mailbox, _ = gmail_mailbox(
        settings,
        [
            ok({"historyId": message["historyId"]}),
            ok({"messages": [{"id": message["id"], "threadId": message["threadId"]}]}),
            raw_message(message["id"], message["threadId"], raw),
        ],
    )

    handled = poll_mailbox_once(settings, mailbox=mailbox)

    assert handled == 1
    task = Task.get()
    assert task.thread_id == message["threadId"]
    assert text in task.html
    row = MailMessage.get()
    assert row.source_id == f"gmail:{message['id']}"
    stored = [(item["name"], item["type"]) for item in json.loads(row.attachments)]
    assert stored == attachments
    assert load_cursor() == message["historyId"]


# Credentials


def test_refresh_writes_token_back(settings, tmp_path, token_endpoint, make_settings):
    path = write_user_token(tmp_path / "token.json", token_endpoint.url)
    settings = make_settings(gmail_token_file=path)

    credentials = load_credentials(settings)

    assert credentials.token == "fresh-access-token"
    assert "refresh_token=stored-refresh-token" in token_endpoint.requests[0]
    assert token_endpoint.urls == ["https://oauth2.googleapis.com/token"]
    saved = json.loads(path.read_text())
    assert saved["token"] == "fresh-access-token"
    assert saved["refresh_token"] == "stored-refresh-token"
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600


def test_revoked_token_logged_poller_continues(
    app, make_settings, tmp_path, token_endpoint, caplog
):
    token_endpoint.status = 400
    token_endpoint.body = {
        "error": "invalid_grant",
        "error_description": "Token has been expired or revoked.",
    }
    path = write_user_token(tmp_path / "token.json", token_endpoint.url)
    settings = make_settings(mail_backend="gmail", gmail_token_file=path)

    with caplog.at_level(logging.ERROR):
        handled = poll_mailbox_once(settings)

    assert handled == 0
    messages = [r.getMessage() for r in caplog.records if r.levelname == "ERROR"]
    assert any("gmail-authorize" in m and "invalid_grant" in m for m in messages)
    assert load_cursor() is None


def test_service_account_impersonates_mailbox(make_settings, tmp_path):
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()
    path = tmp_path / "service-account.json"
    path.write_text(
        json.dumps(
            {
                "type": "service_account",
                "project_id": "threadtask-test",
                "private_key_id": "key-1",
                "private_key": pem,
                "client_email": "reader@threadtask-test.iam.gserviceaccount.com",
                "client_id": "1234",
                "token_uri": "http://127.0.0.1:9/token",
            }
        )
    )
    settings = make_settings(gmail_service_account_file=path)

    credentials = load_credentials(settings)

    assert credentials._subject == MAILBOX
    assert list(credentials.scopes) == SCOPES
    assert credentials.service_account_email.startswith("reader@")


def test_gmail_authorize_needs_client_secrets(runner):
    result = runner.invoke(args=["gmail-authorize", "--no-browser"])

    assert result.exit_code != 0
    assert "GMAIL_CLIENT_SECRETS_FILE" in result.output


def test_history_key_name_is_stable():
    # Renaming the key would make every installation run a full sync.
    assert HISTORY_KEY == "gmail.history_id"
