"""Request verification, retries and identity of the Slack command."""

from __future__ import annotations

import json
import logging
import time
from datetime import UTC, datetime

import pytest
from freezegun import freeze_time
from slack_sdk.signature import SignatureVerifier

from core import tasks
from core.config import ConfigError
from core.models import Event, Task
from tests.conftest import ASSIGNEE, CREATOR, actor
from tests.slack.conftest import (
    ASSIGNEE_ID,
    BOT_ID,
    BOT_TOKEN,
    CREATOR_ID,
    NO_EMAIL_ID,
    SIGNING_SECRET,
    SLACK_CORPUS,
    STRANGER_ID,
    visible,
)


@pytest.fixture
def task(db):
    return tasks.create_task(
        actor(CREATOR),
        {"thread_id": "thread-1", "subject": "Printer jam", "assigned_to": ASSIGNEE},
    )


def status_events(task_id: int) -> int:
    return (
        Event.select()
        .where((Event.task == task_id) & (Event.field == "status"))
        .count()
    )


def test_bad_signature_rejected(slack, task):
    body = slack.body(f"fixed {task.id}", ASSIGNEE_ID)

    response = slack.post(body, secret="not-the-signing-secret")
    slack.finish()

    assert response.status_code == 401
    assert slack.server.calls("/api/users.info") == []
    assert slack.server.calls("/respond/") == []
    assert Task.get_by_id(task.id).status == "open"


def test_missing_signature_rejected(slack, task):
    body = slack.body(f"fixed {task.id}", ASSIGNEE_ID)

    response = slack.client.post(
        "/slack/events", data=body, content_type="application/x-www-form-urlencoded"
    )
    slack.finish()

    assert response.status_code == 401
    assert Task.get_by_id(task.id).status == "open"


def test_tampered_body_rejected(slack, task):
    body = slack.body(f"show {task.id}", ASSIGNEE_ID)
    stamp = str(int(time.time()))
    signature = SignatureVerifier(SIGNING_SECRET).generate_signature(
        timestamp=stamp, body=body
    )

    response = slack.client.post(
        "/slack/events",
        data=body.replace("show", "fixed"),
        content_type="application/x-www-form-urlencoded",
        headers={"X-Slack-Request-Timestamp": stamp, "X-Slack-Signature": signature},
    )
    slack.finish()

    assert response.status_code == 401
    assert Task.get_by_id(task.id).status == "open"


def test_stale_timestamp_rejected(slack, task):
    body = slack.body(f"fixed {task.id}", ASSIGNEE_ID)

    # Signed correctly, but six minutes ago: older than bolt's five minutes.
    response = slack.post(body, timestamp=int(time.time()) - 6 * 60)
    slack.finish()

    assert response.status_code == 401
    assert slack.server.calls("/respond/") == []
    assert Task.get_by_id(task.id).status == "open"


def test_documented_signed_request_accepted(make_settings, slack_settings, slack_api):
    from wsgi import create_app

    recorded = json.loads(
        (SLACK_CORPUS / "slash-command.signed-request.json").read_text()
    )
    settings = make_settings(
        **{
            **slack_settings,
            "slack_signing_secret": recorded["signing_secret"],
            "slack_command": "/webhook-collect",
        }
    )
    flask_app = create_app(settings)
    signed_at = int(recorded["headers"]["X-Slack-Request-Timestamp"])

    with freeze_time(datetime.fromtimestamp(signed_at + 10, UTC)):
        response = flask_app.test_client().post(
            "/slack/events",
            data=recorded["body"],
            content_type=recorded["content_type"],
            headers=recorded["headers"],
        )
    flask_app.extensions["slack"].shutdown()

    # The recorded command has no text, which is the help command.
    assert response.status_code == 200
    assert "/webhook-collect list" in response.get_json()["text"] + json.dumps(
        response.get_json()["blocks"]
    )


def test_retry_of_applied_command_ignored(slack, task):
    first = slack.reply(f"fixed {task.id}", ASSIGNEE_ID)
    body = slack.body(f"fixed {task.id}", ASSIGNEE_ID)
    original = slack.post(body)
    slack.server.wait_for(f"/respond/{slack.sent}")

    retried = slack.post(
        body, headers={"X-Slack-Retry-Num": "1", "X-Slack-Retry-Reason": "http_timeout"}
    )
    slack.finish()

    assert "now has status fixed" in first["text"]
    assert original.status_code == 200
    assert retried.status_code == 200
    assert len(slack.server.calls(f"/respond/{slack.sent}")) == 1
    stored = Task.get_by_id(task.id)
    assert stored.status == "fixed"
    assert status_events(task.id) == 1


def test_retry_of_unseen_command_applied(slack, task):
    body = slack.body(f"fixed {task.id}", ASSIGNEE_ID)

    response = slack.post(body, headers={"X-Slack-Retry-Num": "2"})
    reply = slack.server.wait_for(f"/respond/{slack.sent}")[0].params
    slack.finish()

    assert response.status_code == 200
    assert "now has status fixed" in reply["text"]
    assert Task.get_by_id(task.id).status == "fixed"


def test_retry_of_rejected_command_replied(slack, task):
    body = slack.body(f"close {task.id}", STRANGER_ID)
    slack.post(body)
    slack.server.wait_for(f"/respond/{slack.sent}")

    slack.post(body, headers={"X-Slack-Retry-Num": "1"})
    replies = slack.server.wait_for(f"/respond/{slack.sent}", count=2)
    slack.finish()

    assert all("who created this task" in r.params["text"] for r in replies)
    assert Task.get_by_id(task.id).status == "open"


def test_user_without_email_changes_nothing(slack, task):
    reply = slack.reply(f"fixed {task.id}", NO_EMAIL_ID)
    slack.finish()

    assert "You cannot change tasks from Slack" in reply["text"]
    assert "no email address" in reply["text"]
    assert "every change is made in the name of an email address" in reply["text"]
    assert reply["response_type"] == "ephemeral"
    assert Task.get_by_id(task.id).status == "open"
    assert status_events(task.id) == 0


def test_bot_user_changes_nothing(slack, task):
    reply = slack.reply(f"close {task.id}", BOT_ID)
    slack.finish()

    assert "bot or deactivated" in reply["text"]
    assert Task.get_by_id(task.id).status == "open"


def test_user_without_email_told_why_for_own_list(slack, task):
    own = slack.reply("list", NO_EMAIL_ID)
    by_query = slack.reply("list status:open", NO_EMAIL_ID)
    slack.finish()

    assert "I cannot list the tasks assigned to you" in own["text"]
    assert "no email address" in own["text"]
    assert "change" not in own["text"]
    assert "1 task matches" in by_query["text"]


def test_unknown_slack_user_told_why(slack, task):
    reply = slack.reply(f"fixed {task.id}", "U0GONE")
    slack.finish()

    assert "user_not_found" in visible(reply["text"])
    assert Task.get_by_id(task.id).status == "open"


def test_profile_cached_between_commands(slack, task):
    slack.reply(f"show {task.id}", ASSIGNEE_ID)
    slack.reply(f"fixed {task.id}", ASSIGNEE_ID)
    slack.finish()

    looked_up = [r.params["user"] for r in slack.server.calls("/api/users.info")]
    assert looked_up == [ASSIGNEE_ID]


def test_database_failure_reported_and_logged(slack, task, db, caplog):
    # A missing table makes the command fail inside the database driver.
    db.execute_sql("ALTER TABLE event RENAME TO event_hidden")
    try:
        with caplog.at_level(logging.ERROR, logger="bot.slack_app"):
            reply = slack.reply(f"show {task.id}", CREATOR_ID)
            slack.finish()
    finally:
        db.execute_sql("ALTER TABLE event_hidden RENAME TO event")

    assert "Something failed on the server" in reply["text"]
    assert "show command failed" in caplog.text


def test_slack_off_returns_503(make_settings):
    from wsgi import create_app

    flask_app = create_app(make_settings())

    response = flask_app.test_client().post("/slack/events", data="text=help")

    assert response.status_code == 503
    assert "SLACK_SIGNING_SECRET" in response.get_json()["detail"]
    assert "slack" not in flask_app.extensions


@pytest.mark.parametrize("missing", ["slack_signing_secret", "slack_bot_token"])
def test_half_configured_slack_rejected(make_settings, slack_settings, missing):
    from wsgi import create_app

    settings = make_settings(**{**slack_settings, missing: ""})

    with pytest.raises(ConfigError, match=missing.upper()):
        create_app(settings)


def test_invalid_command_name_rejected(make_settings, slack_settings):
    from wsgi import create_app

    settings = make_settings(**{**slack_settings, "slack_command": "task"})

    with pytest.raises(ConfigError, match="SLACK_COMMAND"):
        create_app(settings)


@pytest.mark.parametrize("present", [True, False])
def test_request_without_user_rejected(slack, task, present):
    body = slack.body(f"fixed {task.id}", "")
    if not present:
        body = "&".join(p for p in body.split("&") if not p.startswith("user_id="))

    response = slack.post(body)
    slack.finish()

    message = response.get_json()
    assert response.status_code == 200
    assert message["response_type"] == "ephemeral"
    assert message["text"].startswith("Slack sent this command without a user id")
    assert slack.server.calls("/api/users.info") == []
    assert slack.server.calls("/respond/") == []
    assert Task.get_by_id(task.id).status == "open"


def test_app_built_without_token_warning(
    make_settings, slack_settings, monkeypatch, caplog
):
    from wsgi import create_app

    # Bolt also reads the token from the environment, as a deployment sets it.
    monkeypatch.setenv("SLACK_BOT_TOKEN", BOT_TOKEN)

    with caplog.at_level(logging.DEBUG, logger="bot.bolt"):
        flask_app = create_app(make_settings(**slack_settings))
    flask_app.extensions["slack"].shutdown()

    assert [r for r in caplog.records if r.name.startswith("bot.bolt")] == []
