"""Triggers and buttons of the Gmail card, through signed requests."""

from __future__ import annotations

from datetime import datetime

from core.models import Event, Task
from core.tasks import Actor, create_task, update_task
from tests.addon.conftest import (
    BASE_URL,
    assert_card_response,
    button,
    button_texts,
    card_of,
    labelled_values,
    notification_of,
    raw_message,
    widgets_of,
)
from tests.conftest import ASSIGNEE, CREATOR, STRANGER


def test_message_trigger_shows_task(addon, open_task):
    update_task(Actor(ASSIGNEE, "api"), open_task.id, {"criticality": "high"})
    Task.update(last_reminder_at=datetime(2026, 12, 1, 9, 30)).where(
        Task.id == open_task.id
    ).execute()

    response = addon.act("/addon/message", CREATOR, thread_id="thread-1")

    assert response.status_code == 200
    body = response.get_json()
    assert_card_response(body)
    card = body["action"]["navigations"][0]["pushCard"]
    assert card["header"]["title"] == "Printer on floor 2 is jammed"
    values = labelled_values(card)
    assert values["Status"] == "open"
    assert values["Criticality"] == "high"
    assert values["Created by"] == CREATOR
    assert values["Assigned to"] == ASSIGNEE
    assert values["Last reminder"] == "2026-12-01 09:30 UTC"
    assert values["Next reminder"].endswith("UTC")
    events = [
        item["text"]
        for item in widgets_of(card, "decoratedText")
        if "via" in item.get("topLabel", "")
    ]
    assert events == ["criticality: medium → high", "created the task"]
    assert button_texts(card) == ["Mark fixed", "Close", "Assign"]


def test_close_button_only_for_creator(addon, open_task):
    response = addon.act("/addon/message", ASSIGNEE, thread_id="thread-1")

    card = card_of(response.get_json())
    assert "Close" not in button_texts(card)
    assert "Mark fixed" in button_texts(card)


def test_card_controls_carry_task_and_version(addon, open_task):
    card = card_of(
        addon.act("/addon/message", CREATOR, thread_id="thread-1").get_json()
    )

    action = button(card, "Mark fixed")["onClick"]["action"]
    assert action["function"] == BASE_URL + "/addon/actions/status"
    assert {"key": "task_id", "value": str(open_task.id)} in action["parameters"]
    assert {"key": "version", "value": "1"} in action["parameters"]
    assert {"key": "status", "value": "fixed"} in action["parameters"]
    [selector] = widgets_of(card, "selectionInput")
    assert (
        selector["onChangeAction"]["function"]
        == BASE_URL + "/addon/actions/criticality"
    )
    assert [item["value"] for item in selector["items"] if item["selected"]] == [
        "medium"
    ]
    [assignee] = widgets_of(card, "textInput")
    assert assignee["value"] == ASSIGNEE


def test_message_trigger_offers_tracking(addon, db):
    response = addon.act("/addon/message", CREATOR, thread_id="unknown-thread")

    body = response.get_json()
    assert_card_response(body)
    action = button(card_of(body), "Track this thread")["onClick"]["action"]
    assert action["function"] == BASE_URL + "/addon/actions/track"


def test_homepage_lists_open_tasks(addon, db):
    creator = Actor(CREATOR, "api")
    mine = create_task(
        creator, {"thread_id": "t-mine", "subject": "Mine", "assigned_to": ASSIGNEE}
    )
    create_task(
        creator, {"thread_id": "t-other", "subject": "Other", "assigned_to": STRANGER}
    )
    fixed = create_task(
        creator,
        {"thread_id": "t-fixed", "subject": "Fixed one", "assigned_to": ASSIGNEE},
    )
    update_task(Actor(ASSIGNEE, "api"), fixed.id, {"status": "fixed"})
    closed = create_task(
        creator, {"thread_id": "t-closed", "subject": "Closed", "assigned_to": ASSIGNEE}
    )
    update_task(creator, closed.id, {"status": "closed"})
    awaiting = create_task(
        Actor(ASSIGNEE, "api"), {"thread_id": "t-awaiting", "subject": "Check my fix"}
    )
    update_task(Actor(ASSIGNEE, "api"), awaiting.id, {"status": "fixed"})

    response = addon.act("/addon/homepage", ASSIGNEE)

    body = response.get_json()
    assert_card_response(body)
    card = card_of(body)
    sections = {section["header"]: section["widgets"] for section in card["sections"]}
    assigned = [w["decoratedText"]["text"] for w in sections["Assigned to you"]]
    waiting = [
        w["decoratedText"]["text"] for w in sections["Fixed, waiting for you to close"]
    ]
    assert assigned == ["Mine"]
    assert waiting == ["Check my fix"]
    link = sections["Assigned to you"][0]["decoratedText"]["onClick"]["openLink"]["url"]
    assert link == "https://mail.google.com/mail/u/0/#all/t-mine"
    assert mine.status == "open"


def test_homepage_links_by_message_id(addon, open_task):
    card = card_of(addon.act("/addon/homepage", ASSIGNEE).get_json())

    [item] = widgets_of(card, "decoratedText")
    url = item["onClick"]["openLink"]["url"]
    assert (
        url
        == "https://mail.google.com/mail/u/0/#search/rfc822msgid%3Ajam-1%40example.com"
    )


def test_homepage_empty(addon, db):
    card = card_of(addon.act("/addon/homepage", STRANGER).get_json())

    texts = [item["text"] for item in widgets_of(card, "textParagraph")]
    assert texts == [
        "You have no open task.",
        "No task you created is waiting for you.",
    ]


def test_mark_fixed_updates_card(addon, open_task):
    response = addon.act(
        "/addon/actions/status",
        ASSIGNEE,
        thread_id="thread-1",
        parameters={"task_id": str(open_task.id), "version": "1", "status": "fixed"},
    )

    body = response.get_json()
    assert_card_response(body)
    assert notification_of(body) == f"Task {open_task.id} is marked fixed."
    assert labelled_values(card_of(body))["Status"] == "fixed"
    assert "Reopen" in button_texts(card_of(body))
    assert Task.get_by_id(open_task.id).status == "fixed"
    event = Event.select().where(Event.field == "status").get()
    assert (event.actor, event.channel, event.new_value) == (ASSIGNEE, "addon", "fixed")


def test_close_refused_for_assignee(addon, open_task):
    response = addon.act(
        "/addon/actions/status",
        ASSIGNEE,
        parameters={"task_id": str(open_task.id), "version": "1", "status": "closed"},
    )

    body = response.get_json()
    assert response.status_code == 200
    assert_card_response(body)
    assert notification_of(body) == (
        f"Only {CREATOR}, who created this task, can close it."
    )
    assert labelled_values(card_of(body))["Status"] == "open"
    assert Task.get_by_id(open_task.id).status == "open"


def test_creator_closes_then_reopens(addon, open_task):
    closed = addon.act(
        "/addon/actions/status",
        CREATOR,
        parameters={"task_id": str(open_task.id), "version": "1", "status": "closed"},
    ).get_json()
    reopened = addon.act(
        "/addon/actions/status",
        CREATOR,
        parameters={"task_id": str(open_task.id), "version": "2", "status": "open"},
    ).get_json()

    assert notification_of(closed) == f"Task {open_task.id} is closed."
    assert labelled_values(card_of(closed))["Next reminder"] == "none"
    assert button_texts(card_of(closed)) == ["Reopen", "Assign"]
    assert notification_of(reopened) == f"Task {open_task.id} is open again."
    assert Task.get_by_id(open_task.id).status == "open"


def test_stale_card_changes_nothing(addon, open_task):
    update_task(Actor(CREATOR, "api"), open_task.id, {"criticality": "low"})

    body = addon.act(
        "/addon/actions/status",
        ASSIGNEE,
        parameters={"task_id": str(open_task.id), "version": "1", "status": "fixed"},
    ).get_json()

    assert "changed since this card was shown" in notification_of(body)
    assert labelled_values(card_of(body))["Criticality"] == "low"
    assert Task.get_by_id(open_task.id).status == "open"


def test_criticality_selector(addon, open_task):
    body = addon.act(
        "/addon/actions/criticality",
        ASSIGNEE,
        parameters={"task_id": str(open_task.id), "version": "1"},
        form={"criticality": "critical"},
    ).get_json()

    assert_card_response(body)
    assert notification_of(body) == f"Task {open_task.id} is now critical."
    assert Task.get_by_id(open_task.id).criticality == "critical"
    event = Event.select().where(Event.field == "criticality").get()
    assert event.channel == "addon"


def test_invalid_criticality_explained(addon, open_task):
    body = addon.act(
        "/addon/actions/criticality",
        ASSIGNEE,
        parameters={"task_id": str(open_task.id)},
        form={"criticality": "urgent"},
    ).get_json()

    assert notification_of(body) == (
        "criticality='urgent' is invalid: must be one of low, medium, high, critical."
    )
    assert Task.get_by_id(open_task.id).criticality == "medium"


def test_assign_button(addon, open_task):
    body = addon.act(
        "/addon/actions/assign",
        CREATOR,
        parameters={"task_id": str(open_task.id), "version": "1"},
        form={"assignee": "Sam <SAM@example.com>"},
    ).get_json()

    assert_card_response(body)
    assert notification_of(body) == f"Task {open_task.id} is assigned to {STRANGER}."
    assert labelled_values(card_of(body))["Assigned to"] == STRANGER
    assert Task.get_by_id(open_task.id).assigned_to == STRANGER


def test_empty_assignee_unassigns(addon, open_task):
    body = addon.act(
        "/addon/actions/assign",
        CREATOR,
        parameters={"task_id": str(open_task.id)},
    ).get_json()

    assert notification_of(body) == f"Task {open_task.id} is unassigned."
    assert Task.get_by_id(open_task.id).assigned_to == ""


def test_invalid_assignee_explained(addon, open_task):
    body = addon.act(
        "/addon/actions/assign",
        CREATOR,
        parameters={"task_id": str(open_task.id)},
        form={"assignee": "not an address"},
    ).get_json()

    assert notification_of(body).startswith("assigned_to='not an address' is invalid")
    assert Task.get_by_id(open_task.id).assigned_to == ASSIGNEE


def test_missing_task_explained(addon, db):
    body = addon.act(
        "/addon/actions/status",
        CREATOR,
        parameters={"task_id": "999", "status": "fixed"},
    ).get_json()

    assert_card_response(body)
    assert notification_of(body) == "Task 999 does not exist."
    assert card_of(body)["header"]["title"] == "Task not found"


def test_track_thread_reads_gmail(addon, gmail, db):
    gmail.respond(
        200,
        {
            "id": "msg-thread-9",
            "threadId": "thread-9",
            "raw": raw_message(
                "Projector broken",
                "<projector-1@example.com>",
                "<p>It <b>flickers</b>.</p>",
            ),
        },
    )

    response = addon.act("/addon/actions/track", STRANGER, thread_id="thread-9")

    body = response.get_json()
    assert_card_response(body)
    task = Task.for_thread("thread-9")
    assert task is not None
    assert notification_of(body) == f"Task {task.id} now tracks this thread."
    assert card_of(body)["header"]["title"] == "Projector broken"
    assert task.creator_email == STRANGER
    assert task.subject == "Projector broken"
    assert task.latest_message_id == "<projector-1@example.com>"
    assert "flickers" in task.html
    created = Event.get(Event.task == task)
    assert (created.actor, created.channel) == (STRANGER, "addon")

    [(uri, method, _, headers)] = gmail.requests
    assert method == "GET"
    assert "/gmail/v1/users/me/messages/msg-thread-9" in uri
    assert "format=raw" in uri
    assert headers["X-Goog-Gmail-Access-Token"] == "event-access-token"
    assert headers["authorization"] == "Bearer user-oauth-token"
    assert gmail.credentials[0].token == "user-oauth-token"


def test_track_already_tracked(addon, gmail, open_task):
    body = addon.act("/addon/actions/track", STRANGER, thread_id="thread-1").get_json()

    assert (
        notification_of(body)
        == f"This thread is already tracked as task {open_task.id}."
    )
    assert gmail.requests == []
    assert Task.select().count() == 1


def test_track_gmail_error(addon, gmail, db):
    gmail.respond(403, {"error": {"code": 403, "message": "Forbidden"}})

    body = addon.act("/addon/actions/track", STRANGER, thread_id="thread-9").get_json()

    assert_card_response(body)
    assert notification_of(body) == (
        "Gmail did not return the open message (HTTP 403); open it again and retry."
    )
    assert Task.select().count() == 0


def test_track_without_message(addon, gmail, db):
    body = addon.act("/addon/actions/track", STRANGER).get_json()

    assert "Open a message in Gmail" in notification_of(body)
    assert gmail.requests == []
    assert Task.select().count() == 0


class QueryCounter:
    """Counts the SQL statements the database runs inside a ``with`` block."""

    def __init__(self, database) -> None:
        self.database = database.obj
        self.statements: list[str] = []

    def __enter__(self) -> QueryCounter:
        original = self.database.execute_sql

        def counting(sql, *args, **kwargs):
            self.statements.append(sql)
            return original(sql, *args, **kwargs)

        self.database.execute_sql = counting
        return self

    def __exit__(self, *exc_info) -> None:
        del self.database.execute_sql


def test_homepage_runs_one_query(addon, db):
    creator = Actor(CREATOR, "api")
    for number in range(5):
        create_task(
            creator,
            {"thread_id": f"t-{number}", "subject": "Jam", "assigned_to": ASSIGNEE},
        )

    with QueryCounter(db) as counter:
        response = addon.act("/addon/homepage", ASSIGNEE)

    assert len(widgets_of(card_of(response.get_json()), "decoratedText")) == 5
    assert len(counter.statements) == 1


def test_task_card_runs_two_queries(addon, db, open_task):
    with QueryCounter(db) as counter:
        addon.act("/addon/message", CREATOR, thread_id="thread-1")

    assert len(counter.statements) == 2


def test_plain_text_fields_unescaped(addon, db):
    # The cards treat header, notification, button and selection item text as
    # plain text, so an escaped value there would show its entities.
    task = create_task(
        Actor(CREATOR, "api"), {"thread_id": "t-amp", "subject": "Q&A <script>"}
    )

    body = addon.act(
        "/addon/actions/assign",
        CREATOR,
        parameters={"task_id": str(task.id)},
        form={"assignee": "<b>bob</b>@example.com"},
    ).get_json()

    assert_card_response(body)
    card = card_of(body)
    assert card["header"]["title"] == "Q&A <script>"
    assert card["header"]["subtitle"] == f"Task {task.id} · open"
    assert notification_of(body).startswith(
        "assigned_to='<b>bob</b>@example.com' is invalid"
    )
    assert button_texts(card) == ["Mark fixed", "Close", "Assign"]
    [selector] = widgets_of(card, "selectionInput")
    assert [item["text"] for item in selector["items"]] == [
        "low",
        "medium",
        "high",
        "critical",
    ]


def test_formatted_text_escaped_once(addon, db):
    # decoratedText.text and textParagraph.text take a few HTML tags.
    task = create_task(
        Actor(CREATOR, "api"),
        {
            "thread_id": "t-amp",
            "subject": "Q&A <b>x</b> &amp;",
            "assigned_to": ASSIGNEE,
        },
    )

    homepage = card_of(addon.act("/addon/homepage", ASSIGNEE).get_json())
    missing = addon.act(
        "/addon/actions/status",
        CREATOR,
        parameters={"task_id": "12345", "status": "fixed"},
    ).get_json()

    [item] = widgets_of(homepage, "decoratedText")
    assert item["text"] == "Q&amp;A &lt;b&gt;x&lt;/b&gt; &amp;amp;"
    assert item["topLabel"] == f"Task {task.id} · medium"
    [paragraph] = widgets_of(card_of(missing), "textParagraph")
    assert paragraph["text"] == "Task 12345 no longer exists."
    assert notification_of(missing) == "Task 12345 does not exist."


def test_superscript_task_id_explained(addon, open_task):
    # "²".isdigit() is true, but int("²") raises ValueError.
    response = addon.act(
        "/addon/actions/status",
        CREATOR,
        parameters={"task_id": "²", "status": "fixed"},
    )

    assert response.status_code == 200
    assert notification_of(response.get_json()) == (
        "task_id='²' is invalid: must be a whole number."
    )
    assert Task.get_by_id(open_task.id).status == "open"


def test_homepage_line_without_link(addon, db):
    # A Maildir task keyed by Message-ID, with no latest Message-ID known.
    create_task(
        Actor(CREATOR, "api"),
        {
            "thread_id": "<root@mail.example.com>",
            "subject": "No link",
            "assigned_to": ASSIGNEE,
        },
    )

    card = card_of(addon.act("/addon/homepage", ASSIGNEE).get_json())

    [item] = widgets_of(card, "decoratedText")
    assert item["text"] == "No link"
    assert "onClick" not in item
