"""The HTML preview of the card, signed in with an API token."""

from __future__ import annotations

import json

from core.models import Event, Task
from tests.conftest import ASSIGNEE, CREATOR

STATUS_FUNCTION = "https://threadtask.test/addon/actions/status"


def sign_in(client, token_for, email, target="/addon/preview?thread_id=thread-1"):
    secret = token_for(email)["Authorization"].split(" ", 1)[1]
    return client.post("/addon/preview/sign-in", data={"token": secret, "next": target})


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
