"""Slack direct messages to a task's new assignee, whatever the channel."""

from __future__ import annotations

import logging

import pytest

from core import tasks
from core.models import Task
from tests.conftest import ASSIGNEE, CREATOR, STRANGER, actor
from tests.slack.conftest import ASSIGNEE_ID, CREATOR_ID, STRANGER_ID, visible


@pytest.fixture
def task(db):
    return tasks.create_task(
        actor(CREATOR), {"thread_id": "t-1", "subject": "VPN down"}
    )


def test_api_assignment_sends_direct_message(slack, task):
    tasks.update_task(actor(CREATOR, "api"), task.id, {"assigned_to": ASSIGNEE})
    slack.finish()

    lookups = slack.server.calls("/api/users.lookupByEmail")
    opened = slack.server.calls("/api/conversations.open")
    posted = slack.server.calls("/api/chat.postMessage")
    assert [r.params["email"] for r in lookups] == [ASSIGNEE]
    assert [r.params["users"] for r in opened] == [ASSIGNEE_ID]
    assert len(posted) == 1
    assert posted[0].params["channel"] == f"D{ASSIGNEE_ID}"
    assert posted[0].params["text"] == (
        f"{CREATOR} assigned task #{task.id} to you: VPN down"
    )
    assert posted[0].headers["Authorization"] == "Bearer xoxb-test-token"


def test_created_with_assignee_sends_direct_message(slack, db):
    task = tasks.create_task(
        actor(CREATOR, "mail"),
        {"thread_id": "t-2", "subject": "Badge", "assigned_to": STRANGER},
    )
    slack.finish()

    posted = slack.server.calls("/api/chat.postMessage")
    assert [r.params["channel"] for r in posted] == [f"D{STRANGER_ID}"]
    assert f"task #{task.id}" in posted[0].params["text"]


def test_slack_assignment_sends_direct_message(slack, task):
    slack.reply(f"assign {task.id} <@{ASSIGNEE_ID}|alex>", CREATOR_ID)
    slack.finish()

    posted = slack.server.calls("/api/chat.postMessage")
    assert [r.params["channel"] for r in posted] == [f"D{ASSIGNEE_ID}"]


def test_self_assignment_sends_nothing(slack, task):
    tasks.update_task(actor(CREATOR), task.id, {"assigned_to": CREATOR})
    slack.finish()

    assert slack.server.calls("/api/users.lookupByEmail") == []
    assert slack.server.calls("/api/chat.postMessage") == []


def test_other_changes_send_nothing(slack, task):
    tasks.update_task(actor(CREATOR), task.id, {"criticality": "high"})
    tasks.update_task(actor(CREATOR), task.id, {"status": "fixed"})
    slack.finish()

    assert slack.server.calls("/api/users.lookupByEmail") == []


def test_assignee_without_slack_account_skipped(slack, task):
    changed = tasks.update_task(
        actor(CREATOR), task.id, {"assigned_to": "nobody@example.com"}
    )
    slack.finish()

    assert changed.assigned_to == "nobody@example.com"
    assert len(slack.server.calls("/api/users.lookupByEmail")) == 1
    assert slack.server.calls("/api/chat.postMessage") == []


def test_slack_error_logged_not_raised(slack, task, caplog):
    # Slack returns an error for chat.postMessage, as for an archived channel.
    slack.server.failures["chat.postMessage"] = "channel_not_found"

    with caplog.at_level(logging.WARNING, logger="bot.notify"):
        changed = tasks.update_task(actor(CREATOR), task.id, {"assigned_to": ASSIGNEE})
        slack.finish()

    assert changed.assigned_to == ASSIGNEE
    assert Task.get_by_id(task.id).assigned_to == ASSIGNEE
    assert f"task {task.id}: Slack assignment message failed: channel_not_found" in (
        caplog.text
    )


@pytest.mark.settings(slack_notify_assignee=False)
def test_notices_off_sends_nothing(slack, task):
    tasks.update_task(actor(CREATOR), task.id, {"assigned_to": ASSIGNEE})
    slack.finish()

    assert slack.server.calls("/api/users.lookupByEmail") == []
    assert slack.server.calls("/api/chat.postMessage") == []


def test_process_without_app_sends_notices(slack, task, settings):
    from bot import start_assignment_notices

    # The clock process changes tasks without building the web app.
    notifier = start_assignment_notices(settings)
    tasks.update_task(actor(CREATOR, "mail"), task.id, {"assigned_to": ASSIGNEE})
    notifier.shutdown()

    posted = slack.server.calls("/api/chat.postMessage")
    assert [r.params["channel"] for r in posted] == [f"D{ASSIGNEE_ID}"]


def test_notices_off_without_slack(make_settings):
    from bot import start_assignment_notices

    assert start_assignment_notices(make_settings()) is None
    assert start_assignment_notices(make_settings(slack_notify_assignee=True)) is None


def test_shutdown_stops_notices(slack, task, caplog):
    slack.finish()

    with caplog.at_level(logging.ERROR, logger="bot.notify"):
        tasks.update_task(actor(CREATOR), task.id, {"assigned_to": ASSIGNEE})

    assert slack.server.calls("/api/users.lookupByEmail") == []
    assert caplog.text == ""


def test_direct_message_escapes_subject(slack, db):
    subject = "<!channel> ping <https://evil.example|click me> *now*"
    task = tasks.create_task(
        actor(CREATOR), {"thread_id": "18c2a5f0e1d2b3a4", "subject": subject}
    )

    tasks.update_task(actor(CREATOR), task.id, {"assigned_to": ASSIGNEE})
    slack.finish()

    (posted,) = slack.server.calls("/api/chat.postMessage")
    text = posted.params["text"]
    block = posted.params["blocks"][0]["text"]["text"]
    assert "<" not in text
    assert visible(text) == f"{CREATOR} assigned task #{task.id} to you: {subject}"
    url = "https://mail.google.com/mail/u/0/#all/18c2a5f0e1d2b3a4"
    assert f"<{url}|&lt;!channel&gt; ping" in block
    assert block.count("<") == 1


def test_direct_message_without_gmail_thread(slack, db):
    task = tasks.create_task(
        actor(CREATOR), {"thread_id": "<m1@mail.example.com>", "subject": "VPN"}
    )

    tasks.update_task(actor(CREATOR), task.id, {"assigned_to": ASSIGNEE})
    slack.finish()

    (posted,) = slack.server.calls("/api/chat.postMessage")
    block = posted.params["blocks"][0]["text"]["text"]
    assert block.endswith("to you:\nVPN\nthread `&lt;m1@mail.example.com&gt;`")
    assert "http" not in block
