"""The HTML preview of the card, signed in with an API token."""

from __future__ import annotations

import json
from datetime import datetime

from freezegun import freeze_time

from core.models import ApiToken, Event, Task
from core.tasks import Actor, create_task
from tests.addon.conftest import (
    ASSIGN_FUNCTION,
    STATUS_FUNCTION,
    post_action,
    sign_in,
)
from tests.conftest import ASSIGNEE, CREATOR


def test_preview_asks_for_token(client, open_task):
    response = client.get("/addon/preview?thread_id=thread-1")

    page = response.get_data(as_text=True)
    assert response.status_code == 401
    assert 'action="/addon/preview/sign-in"' in page
    assert 'name="next" value="/addon/preview?thread_id=thread-1"' in page
    assert "Set-Cookie" not in response.headers


def test_preview_rejects_bad_token(client, open_task):
    response = client.post(
        "/addon/preview/sign-in", data={"token": "tt_wrong", "next": "/addon/preview"}
    )

    assert response.status_code == 401
    assert "The API token is not valid." in response.get_data(as_text=True)
    assert "Set-Cookie" not in response.headers


def test_sign_in_redirects_only_to_preview(client, token_for, open_task):
    response = sign_in(
        client, token_for, ASSIGNEE, target="https://evil.example/addon/preview"
    )

    assert response.status_code == 302
    assert response.headers["Location"] == "/addon/preview"


def test_token_becomes_httponly_cookie(client, token_for, open_task):
    response = sign_in(client, token_for, ASSIGNEE)

    assert response.status_code == 302
    assert response.headers["Location"] == "/addon/preview?thread_id=thread-1"
    cookie = response.headers["Set-Cookie"]
    assert "HttpOnly" in cookie
    assert "SameSite=Strict" in cookie
    assert "Path=/addon/preview" in cookie


def test_preview_shows_task_card(client, token_for, open_task):
    sign_in(client, token_for, ASSIGNEE)

    page = client.get("/addon/preview?thread_id=thread-1").get_data(as_text=True)

    assert "Printer on floor 2 is jammed" in page
    assert f"Task {open_task.id} · open" in page
    assert ">Mark fixed</button>" in page
    assert ">Close</button>" not in page
    assert "&#34;pushCard&#34;" in page


def test_preview_with_bearer_header(client, as_creator, open_task):
    response = client.get("/addon/preview?thread_id=thread-1", headers=as_creator)

    page = response.get_data(as_text=True)
    assert response.status_code == 200
    assert ">Close</button>" in page


def test_preview_homepage(client, as_assignee, open_task):
    page = client.get("/addon/preview", headers=as_assignee).get_data(as_text=True)

    assert "Your open tasks" in page
    assert "Printer on floor 2 is jammed" in page


def test_preview_escapes_task_text(client, as_creator, db):
    from core.tasks import Actor, create_task

    create_task(
        Actor(CREATOR, "api"),
        {"thread_id": "t-x", "subject": "<script>alert(1)</script>"},
    )

    page = client.get("/addon/preview?thread_id=t-x", headers=as_creator).get_data(
        as_text=True
    )

    assert "<script>alert(1)</script>" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page


def test_preview_button_marks_fixed(client, token_for, open_task):
    sign_in(client, token_for, ASSIGNEE)
    action = {
        "function": STATUS_FUNCTION,
        "parameters": [
            {"key": "task_id", "value": str(open_task.id)},
            {"key": "version", "value": "1"},
            {"key": "status", "value": "fixed"},
        ],
    }

    response = client.post(
        "/addon/preview/action",
        data={
            "thread_id": "thread-1",
            "_action": json.dumps(action),
            "assignee": ASSIGNEE,
        },
    )

    page = response.get_data(as_text=True)
    assert response.status_code == 200
    assert f"Task {open_task.id} is marked fixed." in page
    assert f"Task {open_task.id} · fixed" in page
    assert Task.get_by_id(open_task.id).status == "fixed"
    event = Event.select().where(Event.field == "status").get()
    assert (event.actor, event.channel) == (ASSIGNEE, "addon")


def test_preview_action_needs_sign_in(client, open_task):
    action = {
        "function": STATUS_FUNCTION,
        "parameters": [{"key": "status", "value": "fixed"}],
    }

    response = client.post(
        "/addon/preview/action", data={"_action": json.dumps(action)}
    )

    assert response.status_code == 401
    assert Task.get_by_id(open_task.id).status == "open"


def test_preview_rejects_unknown_function(client, as_creator, open_task):
    action = {"function": "https://threadtask.test/tasks", "parameters": []}

    response = client.post(
        "/addon/preview/action",
        data={"_action": json.dumps(action)},
        headers=as_creator,
    )

    assert response.status_code == 400
    assert "no valid action" in response.get_data(as_text=True)


def test_cookie_use_records_last_used(client, token_for, open_task):
    with freeze_time("2026-12-04 09:00:00"):
        sign_in(client, token_for, ASSIGNEE)
    signed_in = ApiToken.get(ApiToken.email == ASSIGNEE).last_used_at

    with freeze_time("2026-12-04 09:30:00"):
        response = client.get("/addon/preview?thread_id=thread-1")

    assert response.status_code == 200
    assert signed_in == datetime(2026, 12, 4, 9, 0)
    used = ApiToken.get(ApiToken.email == ASSIGNEE).last_used_at
    assert used == datetime(2026, 12, 4, 9, 30)


def test_notification_shows_value_as_sent(client, token_for, open_task):
    sign_in(client, token_for, CREATOR)

    response = post_action(
        client, ASSIGN_FUNCTION, open_task, assignee="<b>bob</b>@example.com"
    )

    page = response.get_data(as_text=True)
    assert response.status_code == 200
    notification = page.split('<p class="notification" role="status">', 1)[1]
    assert notification.startswith(
        "assigned_to=&#39;&lt;b&gt;bob&lt;/b&gt;@example.com&#39; is invalid"
    )
    assert "<b>bob</b>" not in page
    assert Task.get_by_id(open_task.id).assigned_to == ASSIGNEE


def test_preview_escapes_title_once(client, as_creator, db):
    create_task(Actor(CREATOR, "api"), {"thread_id": "t-amp", "subject": "Q&A <i>"})

    page = client.get("/addon/preview?thread_id=t-amp", headers=as_creator).get_data(
        as_text=True
    )

    assert "<h1>Q&amp;A &lt;i&gt;</h1>" in page
    assert "&amp;amp;" not in page
    assert "&amp;lt;" not in page
