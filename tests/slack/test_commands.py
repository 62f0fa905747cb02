"""Each /task command end to end: signed request, core, database, reply."""

from __future__ import annotations

import json
import logging
from datetime import datetime, timedelta

import pytest

from bot.commands import FORMS
from core import tasks
from core.models import Delivery, Event, Task
from tests.conftest import ASSIGNEE, CREATOR, STRANGER, actor
from tests.slack.conftest import ASSIGNEE_ID, CREATOR_ID, STRANGER_ID, visible

START = datetime(2026, 3, 2, 9, 0)


def make_task(number: int, **fields) -> Task:
    values = {"thread_id": f"thread-{number}", "subject": f"Subject {number}"}
    values.update(fields)
    creator = values.pop("creator", CREATOR)
    return tasks.create_task(
        actor(creator), values, now=START + timedelta(minutes=number)
    )


def message_text(message: dict) -> str:
    """The fallback text and every block of a message, as one string."""
    return message["text"] + "\n" + json.dumps(message.get("blocks", []))


def task_ids(message: dict) -> list[int]:
    lines = [b["text"]["text"] for b in message["blocks"][1:] if b["type"] == "section"]
    return [int(line.split()[0].strip("*#")) for line in lines]


def announcements(slack) -> list[dict]:
    return [
        r.params
        for r in slack.server.calls("/respond/")
        if r.params.get("response_type") == "in_channel"
    ]


@pytest.mark.parametrize("text", ["", "help", "HELP"])
def test_help_lists_every_command(slack, text):
    response, _ = slack.command(text)
    slack.finish()

    message = response.get_json()
    assert response.status_code == 200
    assert message["response_type"] == "ephemeral"
    for name in FORMS:
        assert f"`/task {name}" in message_text(message)
    assert slack.server.calls("/respond/") == []


def test_list_defaults_to_own_open_and_fixed(slack, db):
    older = make_task(1, assigned_to=ASSIGNEE)
    fixed = make_task(2, assigned_to=ASSIGNEE)
    tasks.update_task(actor(ASSIGNEE), fixed.id, {"status": "fixed"})
    closed = make_task(3, assigned_to=ASSIGNEE)
    tasks.update_task(actor(CREATOR), closed.id, {"status": "closed"})
    make_task(4, assigned_to=STRANGER)
    make_task(5)

    reply = slack.reply("list", ASSIGNEE_ID)
    slack.finish()

    assert reply["response_type"] == "ephemeral"
    assert task_ids(reply) == [fixed.id, older.id]
    assert "2 tasks match `assigned_to:me status:open,fixed`" in reply["text"]
    line = reply["blocks"][1]["text"]["text"]
    assert "Subject 2" in line
    assert f"fixed · medium · {ASSIGNEE}" in line
    assert "|thread>" in line


def test_list_with_query(slack, db):
    make_task(1, criticality="high")
    urgent = make_task(2, criticality="critical", assigned_to=STRANGER)
    make_task(3, criticality="low")

    reply = slack.reply('list criticality:critical OR subject:"Subject 1"')
    slack.finish()

    assert task_ids(reply) == [urgent.id, 1]


def test_list_shows_twenty_and_counts_rest(slack, db):
    created = [make_task(n, assigned_to=CREATOR) for n in range(1, 24)]

    reply = slack.reply("list")
    slack.finish()

    newest_first = [task.id for task in reversed(created)]
    assert task_ids(reply)[:20] == newest_first[:20]
    assert "23 tasks match" in reply["text"]
    assert reply["blocks"][-1]["type"] == "context"
    assert "3 more not shown" in reply["blocks"][-1]["elements"][0]["text"]


def test_list_without_matches(slack, db):
    reply = slack.reply("list status:closed")
    slack.finish()

    assert reply["text"] == "No tasks match `status:closed`."


@pytest.mark.parametrize(
    "query", ["status:done", "status:open AND (", "colour:red", "assigned_to:nobody"]
)
def test_list_with_invalid_query(slack, db, query):
    reply = slack.reply(f"list {query}")
    slack.finish()

    assert visible(reply["text"]).startswith(f"The query {query!r} is invalid: ")
    assert "Use: `/task list [QUERY]" in reply["text"]


def test_list_escapes_subject_markup(slack, db):
    make_task(
        1, subject="<!channel> & <http://evil.example|click>", assigned_to=CREATOR
    )

    reply = slack.reply("list")
    slack.finish()

    line = reply["blocks"][1]["text"]["text"]
    assert "&lt;!channel&gt; &amp; &lt;http://evil.example|click&gt;" in line


def test_show_task_with_events_and_reminders(slack, db):
    task = make_task(1, assigned_to=ASSIGNEE, criticality="high")
    tasks.update_task(actor(ASSIGNEE), task.id, {"status": "fixed"})
    Delivery.create(
        task=task,
        kind="reminder",
        recipient=ASSIGNEE,
        status="failed",
        attempts=3,
        error="SMTP 451",
        scheduled_at=START,
    )

    reply = slack.reply(f"show {task.id}", STRANGER_ID)
    slack.finish()

    text = message_text(reply)
    assert reply["text"] == f"Task #{task.id}: Subject 1"
    assert "*Status:* fixed" in text
    assert "*Criticality:* high" in text
    assert f"*Created by:* {CREATOR}" in text
    assert f"{ASSIGNEE} (api) set status from open to fixed" in text
    assert f"{CREATOR} (api) created the task" in text
    assert f"reminder to {ASSIGNEE}: failed after 3 attempts (SMTP 451)" in text
    assert f"assigned to {ASSIGNEE}: pending" in text


@pytest.mark.parametrize("name", ["show", "fixed", "open", "close"])
def test_unknown_task_id(slack, db, name):
    reply = slack.reply(f"{name} 999")
    slack.finish()

    assert reply["text"] == "Task 999 does not exist.\n`/task list` shows your tasks."


def test_fixed_and_open_by_assignee(slack, db):
    task = make_task(1, assigned_to=ASSIGNEE)

    fixed = slack.reply(f"fixed {task.id}", ASSIGNEE_ID)
    assert Task.get_by_id(task.id).status == "fixed"
    reopened = slack.reply(f"open #{task.id}", ASSIGNEE_ID)
    slack.finish()

    assert fixed["text"] == f"Task #{task.id} now has status fixed."
    assert reopened["text"] == f"Task #{task.id} now has status open."
    assert Task.get_by_id(task.id).status == "open"
    events = list(
        Event.select()
        .where(Event.task == task.id, Event.field == "status")
        .order_by(Event.id)
    )
    assert [(e.new_value, e.actor, e.channel) for e in events] == [
        ("fixed", ASSIGNEE, "slack"),
        ("open", ASSIGNEE, "slack"),
    ]


def test_close_by_creator_announced(slack, db):
    task = make_task(1, assigned_to=ASSIGNEE)

    reply = slack.reply(f"close {task.id}", CREATOR_ID)
    notes = slack.server.wait_for(f"/respond/{slack.sent}", count=2)
    slack.finish()

    assert reply["text"] == f"Task #{task.id} now has status closed."
    assert Task.get_by_id(task.id).status == "closed"
    public = notes[1].params
    assert public["response_type"] == "in_channel"
    assert public["text"] == (
        f"{CREATOR} set the status of task #{task.id} to closed: Subject 1"
    )


def test_close_by_non_creator_rejected(slack, db):
    task = make_task(1, assigned_to=ASSIGNEE)

    reply = slack.reply(f"close {task.id}", ASSIGNEE_ID)
    slack.finish()

    assert reply["response_type"] == "ephemeral"
    # The syntax was right, so the reply has no usage hint.
    assert reply["text"] == f"Only {CREATOR}, who created this task, can close it."
    assert Task.get_by_id(task.id).status == "open"
    assert announcements(slack) == []


def test_crit_sets_level(slack, db):
    task = make_task(1)

    reply = slack.reply(f"crit {task.id} CRITICAL", STRANGER_ID)
    slack.finish()

    assert reply["text"] == f"Task #{task.id} now has criticality critical."
    assert Task.get_by_id(task.id).criticality == "critical"
    assert [a["text"] for a in announcements(slack)] == [
        f"{STRANGER} set the criticality of task #{task.id} to critical: Subject 1"
    ]


def test_same_value_changes_nothing(slack, db):
    task = make_task(1, criticality="high")

    reply = slack.reply(f"crit {task.id} high")
    slack.finish()

    assert (
        reply["text"]
        == f"Task #{task.id} already has criticality high; nothing changed."
    )
    assert Task.get_by_id(task.id).version == 1
    assert announcements(slack) == []


@pytest.mark.parametrize(
    ("target", "expected"),
    [
        (f"<@{ASSIGNEE_ID}|alex>", ASSIGNEE),
        (f"<@{ASSIGNEE_ID}>", ASSIGNEE),
        (f"<mailto:{STRANGER}|{STRANGER}>", STRANGER),
        ("Someone@Example.com", "someone@example.com"),
        ("me", CREATOR),
    ],
)
def test_assign_forms(slack, db, target, expected):
    task = make_task(1)

    reply = slack.reply(f"assign {task.id} {target}", CREATOR_ID)
    slack.finish()

    assert reply["text"] == f"Task #{task.id} now has assignee {expected}."
    assert Task.get_by_id(task.id).assigned_to == expected
    event = Event.get(Event.task == task.id, Event.field == "assigned_to")
    assert (event.actor, event.channel, event.new_value) == (CREATOR, "slack", expected)


def test_assign_mention_without_email_rejected(slack, db):
    task = make_task(1)

    reply = slack.reply(f"assign {task.id} <@U0NOMAIL|ghost>", CREATOR_ID)
    slack.finish()

    assert "cannot be assigned because the Slack profile has no email" in reply["text"]
    assert "give their email address instead." in reply["text"]
    assert "Use:" not in reply["text"]
    assert Task.get_by_id(task.id).assigned_to == ""


@pytest.mark.settings(allowed_email_domains="example.com")
def test_assign_outside_allowed_domains_rejected(slack, db):
    task = make_task(1)

    reply = slack.reply(f"assign {task.id} bob@elsewhere.org", CREATOR_ID)
    slack.finish()

    assert "its domain is not in ALLOWED_EMAIL_DOMAINS" in visible(reply["text"])
    assert "Use:" not in reply["text"]
    assert Task.get_by_id(task.id).assigned_to == ""


@pytest.mark.settings(slack_announce=False)
def test_change_not_announced_when_off(slack, db):
    task = make_task(1)

    reply = slack.reply(f"fixed {task.id}", CREATOR_ID)
    slack.finish()

    assert reply["text"] == f"Task #{task.id} now has status fixed."
    assert len(slack.server.calls("/respond/")) == 1
    assert announcements(slack) == []


def test_ack_sent_before_slow_work(slack, db):
    make_task(1, assigned_to=CREATOR)

    response, _ = slack.command("list")
    slack.finish()

    # The acknowledgement is empty; the list arrives through response_url.
    assert response.status_code == 200
    assert response.get_data() == b""
    assert len(slack.server.calls(f"/respond/{slack.sent}")) == 1


@pytest.mark.parametrize(
    ("text", "form", "message"),
    [
        ("bogus", None, "'bogus' is not a command."),
        ("show", "show ID", "show takes a task id, but 0 arguments were given."),
        ("show abc", "show ID", "'abc' is not a task id"),
        ("show 1 2", "show ID", "show takes a task id, but 2 arguments were given."),
        ("fixed", "fixed ID", "fixed takes a task id"),
        ("fixed -3", "fixed ID", "'-3' is not a task id"),
        ("open", "open ID", "open takes a task id"),
        ("open 1.5", "open ID", "'1.5' is not a task id"),
        ("close", "close ID", "close takes a task id"),
        ("close 0", "close ID", "'0' is not a task id"),
        ("crit", "crit ID LEVEL", "crit takes a task id and one more argument"),
        ("crit 1", "crit ID LEVEL", "but 1 argument was given."),
        ("crit 1 urgent", "crit ID LEVEL", "'urgent' is not a criticality"),
        ("crit x high", "crit ID LEVEL", "'x' is not a task id"),
        ("crit 1 high now", "crit ID LEVEL", "but 3 arguments were given"),
        ("assign", "assign ID @user-or-email", "assign takes a task id and one more"),
        ("assign 1", "assign ID @user-or-email", "but 1 argument was given."),
        (
            "assign 1 @alex",
            "assign ID @user-or-email",
            "'@alex' is neither a Slack mention",
        ),
        (
            "assign 1 alex",
            "assign ID @user-or-email",
            "neither a Slack mention nor an email",
        ),
        (
            "assign one a@example.com",
            "assign ID @user-or-email",
            "'one' is not a task id",
        ),
    ],
)
def test_malformed_command_reported_in_ack(slack, db, text, form, message):
    task = make_task(1)

    response, _ = slack.command(text)
    slack.finish()

    ack_message = response.get_json()
    assert response.status_code == 200
    assert ack_message["response_type"] == "ephemeral"
    assert message in ack_message["text"]
    if form:
        assert ack_message["text"].endswith(f"\nUse: `/task {form}`")
    else:
        assert ack_message["text"].endswith("\nSee `/task help` for the commands.")
    assert slack.server.calls("/respond/") == []
    assert slack.server.calls("/api/users.info") == []
    assert Task.get_by_id(task.id).version == 1


def test_show_shortens_long_values(slack, db):
    task = make_task(1)
    for number in range(5):
        tasks.update_task(actor(), task.id, {"subject": str(number) * 998})

    reply = slack.reply(f"show {task.id}")
    slack.finish()

    # Slack rejects a message with a section text over 3000 characters.
    for block in reply["blocks"]:
        assert len(block["text"]["text"]) <= 3000
    assert "from 3333333" in message_text(reply)


def test_expired_response_url_logged(slack, db, caplog):
    task = make_task(1)
    expired = {"response_url": f"{slack.server.url}/respond/expired"}

    with caplog.at_level(logging.WARNING, logger="bot.slack_app"):
        response, _ = slack.command(f"show {task.id}", fields=expired)
        slack.finish()

    assert response.status_code == 200
    assert len(slack.server.calls("/respond/expired")) == 1
    assert "reply rejected with HTTP 404: expired_url" in caplog.text


def test_assign_unknown_mention_rejected(slack, db, caplog):
    task = make_task(1)

    with caplog.at_level(logging.WARNING):
        reply = slack.reply(f"assign {task.id} <@UNKNOWNX>", CREATOR_ID)
        slack.finish()

    assert visible(reply["text"]) == (
        "Slack user <@UNKNOWNX> was not found; give their email address instead."
    )
    assert Task.get_by_id(task.id).assigned_to == ""
    problems = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert [(r.name, r.levelname) for r in problems] == [("bot.actions", "WARNING")]
    assert problems[0].exc_info is None
    assert CREATOR_ID in problems[0].getMessage()
    assert "UNKNOWNX" in problems[0].getMessage()


def test_list_decodes_slack_entities(slack, db):
    make_task(1, subject="Printer jam")
    budget = make_task(2, subject="R&D budget <draft>")

    by_ampersand = slack.reply('list subject:"R&amp;D"')
    by_brackets = slack.reply("list subject:&lt;draft&gt;")
    slack.finish()

    assert task_ids(by_ampersand) == [budget.id]
    assert task_ids(by_brackets) == [budget.id]
    assert '`subject:"R&amp;D"`' in by_ampersand["text"]


def test_assign_decodes_slack_entities(slack, db):
    task = make_task(1)

    reply = slack.reply(f"assign {task.id} o'brien&amp;co@example.com")
    slack.finish()

    assert Task.get_by_id(task.id).assigned_to == "o'brien&co@example.com"
    assert reply["text"] == (
        f"Task #{task.id} now has assignee o'brien&amp;co@example.com."
    )


@pytest.mark.parametrize("word", ["١", "७"])
def test_non_ascii_task_id_rejected(slack, db, word):
    task = make_task(1)

    response, _ = slack.command(f"fixed {word}")
    slack.finish()

    assert f"{word!r} is not a task id" in response.get_json()["text"]
    assert Task.get_by_id(task.id).status == "open"
    assert slack.server.calls("/respond/") == []
