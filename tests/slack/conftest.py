"""Fixtures for the Slack commands: a local Slack Web API and a request signer.

The Web API and every ``response_url`` point at one HTTP server on 127.0.0.1
with a free port, which records each request and returns responses shaped
like Slack's documented ones in tests/corpus/slack/.
"""

from __future__ import annotations

import copy
import json
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit

import pytest
from slack_sdk.signature import SignatureVerifier

from tests.conftest import ASSIGNEE, CORPUS, CREATOR, STRANGER

SIGNING_SECRET = "test-signing-secret-0123456789abcdef"
BOT_TOKEN = "xoxb-test-token"
SLACK_CORPUS = CORPUS / "slack"

# Slack user ids of the personas, and two users that have no usable email.
CREATOR_ID = "U0CAROL"
ASSIGNEE_ID = "U0ALEX"
STRANGER_ID = "U0SAM"
NO_EMAIL_ID = "U0NOMAIL"
BOT_ID = "U0BOT"
# Seconds a test waits for a reply that the app sends from another thread.
WAIT_SECONDS = 10


def load_corpus(name: str) -> Any:
    return json.loads((SLACK_CORPUS / name).read_text())


def slack_user(user_id: str, email: str | None, **extra: Any) -> dict[str, Any]:
    """A users.info user object shaped like Slack's documented example."""
    user = copy.deepcopy(load_corpus("users.info.success.json")["user"])
    user["id"] = user_id
    user["name"] = user_id.lower()
    user["is_admin"] = False
    if email is None:
        del user["profile"]["email"]
    else:
        user["profile"]["email"] = email
    user.update(extra)
    return user


@dataclass
class Recorded:
    """One request that reached the local Slack server."""

    method: str
    path: str
    params: dict[str, Any]
    headers: dict[str, str]


@dataclass
class SlackApiServer:
    """Serves the Web API methods the app calls and records every request."""

    users: dict[str, dict[str, Any]] = field(default_factory=dict)
    requests: list[Recorded] = field(default_factory=list)
    # Web API method -> the error Slack returns for it, for failure tests.
    failures: dict[str, str] = field(default_factory=dict)
    condition: threading.Condition = field(default_factory=threading.Condition)
    url: str = ""

    def record(self, entry: Recorded) -> None:
        with self.condition:
            self.requests.append(entry)
            self.condition.notify_all()

    def calls(self, prefix: str) -> list[Recorded]:
        with self.condition:
            return [r for r in self.requests if r.path.startswith(prefix)]

    def wait_for(self, prefix: str, count: int = 1) -> list[Recorded]:
        """Wait until ``count`` requests under ``prefix`` arrived, and return them."""
        deadline = time.monotonic() + WAIT_SECONDS
        with self.condition:
            while True:
                found = [r for r in self.requests if r.path.startswith(prefix)]
                remaining = deadline - time.monotonic()
                if len(found) >= count or remaining <= 0:
                    break
                self.condition.wait(remaining)
        assert len(found) >= count, (
            f"expected {count} requests to {prefix}, got {len(found)}: "
            f"{[r.path for r in self.requests]}"
        )
        return found

    def response_for(self, path: str, params: dict[str, Any]) -> dict[str, Any]:
        method = path.removeprefix("/api/")
        if method in self.failures:
            return {"ok": False, "error": self.failures[method]}
        if method == "auth.test":
            return {
                "ok": True,
                "url": "https://example.slack.com/",
                "team": "Example",
                "user": "threadtask",
                "team_id": "T111",
                "user_id": "U0APP",
                "bot_id": "B111",
                "is_enterprise_install": False,
            }
        if method == "users.info":
            user = self.users.get(params.get("user", ""))
            if user is None:
                return load_corpus("users.info.error-user_not_found.json")
            return {"ok": True, "user": user}
        if method == "users.lookupByEmail":
            for user in self.users.values():
                if user["profile"].get("email") == params.get("email"):
                    return {"ok": True, "user": user}
            return load_corpus("users.lookupByEmail.error-users_not_found.json")
        if method == "conversations.open":
            return {"ok": True, "channel": {"id": "D" + str(params.get("users"))}}
        if method == "chat.postMessage":
            return {
                "ok": True,
                "channel": params.get("channel"),
                "ts": "1700000000.000100",
            }
        return {"ok": False, "error": "unknown_method"}


def _handler_for(server: SlackApiServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
            self._handle()

        def do_GET(self) -> None:  # noqa: N802
            self._handle()

        def _handle(self) -> None:
            parts = urlsplit(self.path)
            params: dict[str, Any] = dict(parse_qsl(parts.query))
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length).decode() if length else ""
            if "json" in (self.headers.get("Content-Type") or ""):
                params.update(json.loads(raw or "{}"))
            elif raw:
                params.update(parse_qsl(raw))
            server.record(
                Recorded(self.command, parts.path, params, dict(self.headers))
            )

            if parts.path.startswith("/respond/expired"):
                # What Slack returns once a response_url has been used up or is too old.
                self._send(b"expired_url", "text/plain", status=404)
            elif parts.path.startswith("/respond/"):
                self._send(b"ok", "text/plain")
            else:
                body = json.dumps(server.response_for(parts.path, params)).encode()
                self._send(body, "application/json")

        def _send(self, body: bytes, content_type: str, status: int = 200) -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    return Handler


@pytest.fixture
def slack_api() -> Iterator[SlackApiServer]:
    """A Slack Web API on 127.0.0.1 with the personas as its users."""
    state = SlackApiServer()
    state.users = {
        CREATOR_ID: slack_user(CREATOR_ID, CREATOR),
        ASSIGNEE_ID: slack_user(ASSIGNEE_ID, ASSIGNEE),
        STRANGER_ID: slack_user(STRANGER_ID, STRANGER),
        NO_EMAIL_ID: slack_user(NO_EMAIL_ID, None),
        BOT_ID: slack_user(BOT_ID, None, is_bot=True),
    }
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _handler_for(state))
    state.url = f"http://127.0.0.1:{httpd.server_address[1]}"
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield state
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture
def slack_settings(slack_api: SlackApiServer) -> dict[str, Any]:
    return {
        "slack_signing_secret": SIGNING_SECRET,
        "slack_bot_token": BOT_TOKEN,
        "slack_api_base_url": f"{slack_api.url}/api/",
        "slack_announce": True,
        "slack_notify_assignee": True,
    }


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "settings(**overrides): settings of the app fixture for one test"
    )


@pytest.fixture
def settings(make_settings, slack_settings, request: pytest.FixtureRequest):
    """The shared settings with Slack turned on against the local server.

    A test changes more of them with ``@pytest.mark.settings(name=value)``.
    """
    marker = request.node.get_closest_marker("settings")
    overrides = marker.kwargs if marker else {}
    return make_settings(**{**slack_settings, **overrides})


class SlackSender:
    """Signs slash-command requests and posts them through the Flask test client."""

    def __init__(self, client, server: SlackApiServer, app) -> None:
        self.client = client
        self.server = server
        self.app = app
        self.template = dict(
            parse_qsl(
                (
                    SLACK_CORPUS / "slash-command.bolt-python-enterprise.body.txt"
                ).read_text()
            )
        )
        self.sent = 0

    def body(self, text: str, user_id: str, **fields: str) -> str:
        self.sent += 1
        values = dict(self.template)
        values.update(
            command=self.app.config["SETTINGS"].slack_command,
            text=text,
            user_id=user_id,
            user_name=user_id.lower(),
            team_id="T111",
            channel_id="C111",
            response_url=f"{self.server.url}/respond/{self.sent}",
            trigger_id=f"{self.sent}.111.{time.monotonic_ns()}",
        )
        values.update(fields)
        return urlencode(values)

    def post(
        self,
        body: str,
        *,
        timestamp: int | None = None,
        secret: str = SIGNING_SECRET,
        headers: dict[str, str] | None = None,
    ):
        stamp = str(int(time.time()) if timestamp is None else timestamp)
        signature = SignatureVerifier(secret).generate_signature(
            timestamp=stamp, body=body
        )
        all_headers = {
            "X-Slack-Request-Timestamp": stamp,
            "X-Slack-Signature": signature,
        }
        all_headers.update(headers or {})
        return self.client.post(
            "/slack/events",
            data=body,
            content_type="application/x-www-form-urlencoded",
            headers=all_headers,
        )

    def command(
        self,
        text: str,
        user_id: str = CREATOR_ID,
        fields: dict | None = None,
        **kwargs: Any,
    ):
        """Send ``/task TEXT`` as ``user_id``; return the HTTP response and body."""
        body = self.body(text, user_id, **(fields or {}))
        return self.post(body, **kwargs), body

    def reply(self, text: str, user_id: str = CREATOR_ID) -> dict[str, Any]:
        """Send a command and return the first message sent to its response_url."""
        response, _ = self.command(text, user_id)
        assert response.status_code == 200, response.get_data(as_text=True)
        return self.server.wait_for(f"/respond/{self.sent}")[0].params

    def finish(self) -> None:
        """Wait for every command and message still running in the background."""
        extension = self.app.extensions.get("slack")
        if extension is not None:
            extension.shutdown()


@pytest.fixture
def slack(app, client, slack_api) -> Iterator[SlackSender]:
    sender = SlackSender(client, slack_api, app)
    yield sender
    sender.finish()


# Slack's limit on the text of a section block.
SECTION_MAX_CHARS = 3000


def visible(text: str) -> str:
    """The text as Slack shows it: zero-width spaces dropped, entities decoded."""
    from bot.mrkdwn import ZERO_WIDTH_SPACE, decode

    return decode(text.replace(ZERO_WIDTH_SPACE, ""))


def section_texts(message: dict[str, Any]) -> list[str]:
    return [
        block["text"]["text"]
        for block in message.get("blocks", [])
        if block["type"] == "section"
    ]
