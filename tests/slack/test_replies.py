"""Replies show mail and user text as written, within Slack's size limits."""

from __future__ import annotations

import json
import re
from datetime import datetime, timedelta

import pytest

from addon.cards import thread_link
from core import tasks
from core.models import Delivery, Event, Task
from tests.conftest import CREATOR, actor
from tests.slack.conftest import (
    CREATOR_ID,
    SECTION_MAX_CHARS,
    section_texts,
    visible,
)

# An "&" that does not start one of Slack's three entities: a split entity.
BROKEN_ENTITY = re.compile(r"&(?!amp;|lt;|gt;)")
HOSTILE_SUBJECT = "<!channel> ping <https://evil.example|click me>"
FORMATTED_SUBJECT = "*bold* `code` _italic_ ~struck~"
GMAIL_THREAD = "18c2a5f0e1d2b3a4"
GMAIL_URL = f"https://mail.google.com/mail/u/0/#all/{GMAIL_THREAD}"
LONG = 3500


def make_task(**fields) -> Task:
    values = {"thread_id": GMAIL_THREAD, "subject": "Printer jam"}
    values.update(fields)
    return tasks.create_task(actor(CREATOR), values)


def message_of(slack, text: str) -> dict:
    """The reply to a command, from the acknowledgement or the response URL."""
    response, _ = slack.command(text, CREATOR_ID)
    assert response.status_code == 200
    if response.get_data():
        return response.get_json()
    return slack.server.wait_for(f"/respond/{slack.sent}")[0].params


def assert_fits(message: dict) -> None:
    for text in section_texts(message):
        assert len(text) <= SECTION_MAX_CHARS
        assert not BROKEN_ENTITY.search(text)
    assert not BROKEN_ENTITY.search(message["text"])


@pytest.mark.parametrize(
    "text",
    [
        'list subject:"' + "z" * LONG + '"',
        'list subject:"' + "z" * 1900 + '"',
        "list status:" + "z" * 1900,
        "assign 1 " + "z" * LONG,
        "show " + "9" * LONG,
        "z" * LONG,
        "crit 1 " + "z" * LONG,
    ],
)
def test_echoed_input_shortened(slack, db, text):
    make_task()

    message = message_of(slack, text)
    slack.finish()

    assert_fits(message)
    assert len(message["text"]) < 600
    assert "z" * 300 not in json.dumps(message)
    assert "9" * 300 not in json.dumps(message)


def test_show_cuts_subject_after_escaping(slack, db):
    task = make_task(subject="<" * 998)

    reply = message_of(slack, f"show {task.id}")
    slack.finish()

    assert_fits(reply)
    header = section_texts(reply)[0]
    assert header.startswith(f"*#{task.id}* &lt;&lt;")
    assert header.endswith("&lt;…")
    assert reply["text"].endswith("&lt;…")


def test_list_cuts_subject_after_escaping(slack, db):
    make_task(subject="<" * 998, assigned_to=CREATOR)

    reply = message_of(slack, "list")
    slack.finish()

    assert_fits(reply)
    line = section_texts(reply)[1]
    assert line.split("\n")[0].endswith("&lt;…")
    assert len(line.split("\n")[0]) < 200


def test_show_fits_worst_case_history(slack, db):
    task = make_task(subject="<" * 998, assigned_to="a&b@example.com")
    start = datetime(2026, 3, 2, 9, 0)
    for number in range(5):
        Event.create(
            task=task,
            actor="<" * 320,
            channel="<" * 16,
            field="<" * 64,
            old_value="<" * 5000,
            new_value="&" * 5000,
            created_at=start + timedelta(minutes=number),
        )
        Delivery.create(
            task=task,
            kind="<" * 32,
            recipient="<" * 320,
            status="<" * 16,
            attempts=3,
            error="<" * 10000,
            scheduled_at=start + timedelta(minutes=number),
        )

    reply = message_of(slack, f"show {task.id}")
    slack.finish()

    assert_fits(reply)
    changes, reminders = section_texts(reply)[2:4]
    assert changes.count("\n") == 5
    assert reminders.count("\n") == 5


def test_reply_text_escapes_subject(slack, db):
    task = make_task(subject=HOSTILE_SUBJECT)

    shown = message_of(slack, f"show {task.id}")
    message_of(slack, f"crit {task.id} high")
    public = slack.server.wait_for(f"/respond/{slack.sent}", count=2)[1].params
    slack.finish()

    assert shown["text"] == (
        f"Task #{task.id}: &lt;!channel&gt; ping &lt;https://evil.example|click me&gt;"
    )
    assert public["response_type"] == "in_channel"
    assert "<" not in public["text"]
    assert visible(public["text"]).endswith(f"to high: {HOSTILE_SUBJECT}")


def test_formatting_characters_neutralised(slack, db):
    task = make_task(subject=FORMATTED_SUBJECT, assigned_to=CREATOR)

    listed = message_of(slack, "list")
    shown = message_of(slack, f"show {task.id}")
    slack.finish()

    texts = [section_texts(listed)[1], section_texts(shown)[0], shown["text"]]
    for text in texts:
        assert FORMATTED_SUBJECT not in text
        assert "\u200b*\u200bbold\u200b*\u200b" in text
        assert FORMATTED_SUBJECT in visible(text)


def test_thread_link_opens_gmail(slack, db):
    task = make_task(assigned_to=CREATOR)

    listed = message_of(slack, "list")
    shown = message_of(slack, f"show {task.id}")
    slack.finish()

    assert section_texts(listed)[1].endswith(f"<{GMAIL_URL}|thread>")
    assert f"<{GMAIL_URL}|Open the thread>" in section_texts(shown)[1]
    assert "/tasks/" not in json.dumps([listed, shown])


def test_message_id_thread_shown_as_text(slack, db):
    task = make_task(thread_id="<a_1.x@mail.example.com>", assigned_to=CREATOR)

    listed = message_of(slack, "list")
    shown = message_of(slack, f"show {task.id}")
    slack.finish()

    line = section_texts(listed)[1]
    fields = section_texts(shown)[1]
    assert line.endswith("thread `&lt;a_1.x@mail.example.com&gt;`")
    assert fields.endswith("thread `&lt;a_1.x@mail.example.com&gt;`")
    assert "http" not in line + fields


def test_thread_link_matches_card(slack, db):
    task = make_task(
        thread_id="<root@mail.example.com>",
        latest_message_id="<reply-2@mail.example.com>",
        assigned_to=CREATOR,
    )

    shown = message_of(slack, f"show {task.id}")
    slack.finish()

    url = thread_link(task)
    assert url.endswith("#search/rfc822msgid%3Areply-2%40mail.example.com")
    assert f"<{url}|Open the thread>" in section_texts(shown)[1]
