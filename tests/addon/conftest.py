"""Fixtures for the Gmail add-on: configured settings, signed events, Gmail mocks."""

from __future__ import annotations

import base64
import json
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest
from google_auth_httplib2 import AuthorizedHttp
from googleapiclient.discovery import build
from googleapiclient.http import HttpMockSequence
from jsonschema import Draft202012Validator

from core.models import Task
from tests.conftest import ASSIGNEE, CREATOR, GoogleSigner

BASE_URL = "https://threadtask.test"
SERVICE_ACCOUNT = "service-42@gcp-sa-gsuiteaddons.iam.gserviceaccount.com"
CLIENT_ID = "42-addon.apps.googleusercontent.com"
SCHEMAS = Path(__file__).parent / "schemas"
STATUS_FUNCTION = BASE_URL + "/addon/actions/status"
ASSIGN_FUNCTION = BASE_URL + "/addon/actions/assign"


def load_schema(name: str) -> Draft202012Validator:
    schema = json.loads((SCHEMAS / f"{name}.schema.json").read_text())
    Draft202012Validator.check_schema(schema)
    return Draft202012Validator(schema)


CARD_RESPONSE = load_schema("card_response")
DEPLOYMENT = load_schema("deployment")


def assert_card_response(body: dict[str, Any]) -> None:
    errors = [
        f"{'/'.join(map(str, error.absolute_path))}: {error.message}"
        for error in CARD_RESPONSE.iter_errors(body)
    ]
    assert errors == []


def card_of(body: dict[str, Any]) -> dict[str, Any]:
    action = body.get("renderActions", body)["action"]
    navigation = action["navigations"][0]
    return navigation.get("updateCard") or navigation["pushCard"]


def notification_of(body: dict[str, Any]) -> str:
    return body["renderActions"]["action"].get("notification", {}).get("text", "")


def widgets_of(card: dict[str, Any], kind: str) -> list[dict[str, Any]]:
    return [
        widget[kind]
        for section in card["sections"]
        for widget in section["widgets"]
        if kind in widget
    ]


def button_texts(card: dict[str, Any]) -> list[str]:
    return [
        button["text"]
        for button_list in widgets_of(card, "buttonList")
        for button in button_list["buttons"]
    ]


def button(card: dict[str, Any], text: str) -> dict[str, Any]:
    for button_list in widgets_of(card, "buttonList"):
        for candidate in button_list["buttons"]:
            if candidate["text"] == text:
                return candidate
    raise AssertionError(f"no button {text!r} in {button_texts(card)}")


def labelled_values(card: dict[str, Any]) -> dict[str, str]:
    return {
        item["topLabel"]: item["text"]
        for item in widgets_of(card, "decoratedText")
        if "topLabel" in item
    }


@pytest.fixture
def settings(make_settings):
    return make_settings(
        addon_service_account=SERVICE_ACCOUNT,
        addon_base_url=BASE_URL,
        addon_oauth_client_id=CLIENT_ID,
    )


class AddonClient:
    """Posts events to the add-on endpoints the way Google's service does."""

    def __init__(self, client, signer: GoogleSigner) -> None:
        self.client = client
        self.signer = signer

    def system_token(self, path: str, **claims: Any) -> str:
        claims.setdefault("audience", BASE_URL + path)
        claims.setdefault("email", SERVICE_ACCOUNT)
        return self.signer.sign(**claims)

    def user_token(self, email: str, **claims: Any) -> str:
        claims.setdefault("audience", CLIENT_ID)
        return self.signer.sign(email=email, **claims)

    def event(
        self,
        user: str,
        *,
        thread_id: str | None = None,
        parameters: dict[str, str] | None = None,
        form: dict[str, str] | None = None,
        user_token: str | None = None,
    ) -> dict[str, Any]:
        common: dict[str, Any] = {"hostApp": "GMAIL", "platform": "WEB"}
        if parameters:
            common["parameters"] = parameters
        if form:
            common["formInputs"] = {
                name: {"stringInputs": {"value": [value]}}
                for name, value in form.items()
            }
        event: dict[str, Any] = {
            "commonEventObject": common,
            "authorizationEventObject": {
                "userIdToken": user_token or self.user_token(user),
                "userOAuthToken": "user-oauth-token",
            },
        }
        if thread_id is not None:
            event["gmail"] = {
                "threadId": thread_id,
                "messageId": "msg-" + thread_id,
                "accessToken": "event-access-token",
            }
        return event

    def post(self, path: str, event: dict[str, Any], *, token: str | None = None):
        headers = {"Authorization": f"Bearer {token or self.system_token(path)}"}
        return self.client.post(path, json=event, headers=headers)

    def act(self, path: str, user: str, **event_fields: Any):
        return self.post(path, self.event(user, **event_fields))


@pytest.fixture
def addon(client, google_signer) -> AddonClient:
    return AddonClient(client, google_signer)


@pytest.fixture
def open_task(db) -> Task:
    """A task created by the creator and assigned to the assignee, through the core."""
    from core.tasks import Actor, create_task

    return create_task(
        Actor(email=CREATOR, channel="api"),
        {
            "thread_id": "thread-1",
            "subject": "Printer on floor 2 is jammed",
            "assigned_to": ASSIGNEE,
            "latest_message_id": "<jam-1@example.com>",
        },
    )


def raw_message(subject: str, message_id: str, html: str) -> str:
    message = EmailMessage()
    message["From"] = f"Carol <{CREATOR}>"
    message["To"] = "tracker@example.com"
    message["Subject"] = subject
    message["Message-ID"] = message_id
    message.set_content("Plain version.")
    message.add_alternative(html, subtype="html")
    return base64.urlsafe_b64encode(message.as_bytes()).decode().rstrip("=")


class GmailMock:
    """Serves canned Gmail API responses through the app's service builder."""

    def __init__(self) -> None:
        self.responses: list[tuple[dict[str, str], str]] = []
        self.http: HttpMockSequence | None = None
        self.credentials: list[Any] = []

    def respond(self, status: int, body: dict[str, Any]) -> None:
        self.responses.append(({"status": str(status)}, json.dumps(body)))

    def build(self, credentials):
        self.credentials.append(credentials)
        self.http = HttpMockSequence(self.responses)
        # AuthorizedHttp adds the user's token the way the real client does.
        authorized = AuthorizedHttp(credentials, http=self.http)
        return build("gmail", "v1", http=authorized, cache_discovery=False)

    @property
    def requests(self) -> list[tuple[str, str, Any, dict[str, str]]]:
        return [] if self.http is None else self.http.request_sequence


@pytest.fixture
def gmail(app) -> GmailMock:
    mock = GmailMock()
    app.config["ADDON_GMAIL_SERVICE"] = mock.build
    return mock


def sign_in(client, token_for, email, target="/addon/preview?thread_id=thread-1"):
    secret = token_for(email)["Authorization"].split(" ", 1)[1]
    return client.post("/addon/preview/sign-in", data={"token": secret, "next": target})


def post_action(client, function, task, thread_id="thread-1", headers=None, **form):
    action = {
        "function": function,
        "parameters": [
            {"key": "task_id", "value": str(task.id)},
            {"key": "version", "value": str(task.version)},
            {"key": "status", "value": "fixed"},
        ],
    }
    data = {"thread_id": thread_id, "_action": json.dumps(action), **form}
    return client.post("/addon/preview/action", data=data, headers=headers or {})
