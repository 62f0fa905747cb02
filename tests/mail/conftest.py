"""Fixtures of the mail reader tests: a Maildir to drop emails into and
helpers that write emails the way mail clients do."""

from __future__ import annotations

import itertools
import json
import os
import threading
from datetime import UTC, datetime
from email.message import EmailMessage
from email.utils import format_datetime
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path

import google.auth.transport.requests
import pytest

from core.gmail import set_token_request
from core.mail.maildir import MaildirMailbox
from tests.conftest import MAILBOX

_counter = itertools.count(1)


def make_email(
    *,
    sender: str = "carol@example.com",
    to: str = f"alex@example.com, {MAILBOX}",
    cc: str | None = None,
    subject: str = "Printer on floor 2 is jammed",
    body: str = "It jams on every second page.",
    html: str | None = None,
    message_id: str | None = None,
    in_reply_to: str | None = None,
    references: str | None = None,
    headers: dict[str, str] | None = None,
) -> bytes:
    """Return the bytes of an email as a mail client would send it."""
    message = EmailMessage()
    message["From"] = sender
    if to is not None:
        message["To"] = to
    if cc:
        message["Cc"] = cc
    message["Subject"] = subject
    message["Date"] = format_datetime(datetime(2026, 12, 1, 9, 0, tzinfo=UTC))
    if message_id != "":
        message["Message-ID"] = message_id or f"<m{next(_counter)}@client.example.com>"
    if in_reply_to:
        message["In-Reply-To"] = in_reply_to
    if references:
        message["References"] = references
    for name, value in (headers or {}).items():
        message[name] = value
    message.set_content(body)
    if html is not None:
        message.add_alternative(html, subtype="html")
    return message.as_bytes()


_dropped = itertools.count(1)
SETTLED_EPOCH_NS = 946_684_800 * 10**9  # 2000-01-01T00:00:00Z


def settle(path: Path, raw: bytes) -> None:
    """Write ``raw`` to ``path`` with a modification time in the year 2000.

    The reader leaves files modified in the last few seconds for a later
    poll, and tests freeze the clock at dates of their own. Each file is one
    millisecond newer than the one before, so files are read in the order
    they were written.
    """
    path.write_bytes(raw)
    modified = SETTLED_EPOCH_NS + next(_dropped) * 1_000_000
    os.utime(path, ns=(modified, modified))


class Maildir:
    """The test's Maildir folder, where emails are dropped as files."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.mailbox = MaildirMailbox(path)
        self._names = itertools.count(1)

    def drop(self, raw: bytes, name: str | None = None) -> str:
        """Write a finished email into new/, dated so the reader takes it now."""
        name = name or f"{next(self._names):06d}.test.eml"
        settle(self.path / "new" / name, raw)
        return name

    def new(self) -> list[str]:
        return sorted(p.name for p in (self.path / "new").iterdir())

    def cur(self) -> list[str]:
        return sorted(p.name for p in (self.path / "cur").iterdir())


@pytest.fixture
def maildir(settings) -> Maildir:
    return Maildir(settings.resolved_maildir)


class TokenEndpoint:
    """A local OAuth token endpoint that google-auth refreshes against."""

    def __init__(self) -> None:
        self.status = 200
        self.body: dict = {"access_token": "fresh-access-token", "expires_in": 3600}
        self.requests: list[str] = []
        self.urls: list[str] = []
        endpoint = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - the http.server API
                length = int(self.headers.get("Content-Length", 0))
                endpoint.requests.append(self.rfile.read(length).decode())
                payload = json.dumps(endpoint.body).encode()
                self.send_response(endpoint.status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, *args: object) -> None:
                pass

        self.server = HTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/token"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def token_endpoint():
    """Serve token refreshes locally; google-auth's Google URL is rewritten."""
    endpoint = TokenEndpoint()
    transport = google.auth.transport.requests.Request()

    def request(url, method="GET", body=None, headers=None, **kwargs):
        endpoint.urls.append(url)
        return transport(
            endpoint.url, method=method, body=body, headers=headers, **kwargs
        )

    set_token_request(request)
    yield endpoint
    set_token_request(None)
    endpoint.close()


def write_user_token(path: Path, token_uri: str) -> Path:
    """Write an authorised-user file whose access token has expired."""
    path.write_text(
        json.dumps(
            {
                "token": "expired-access-token",
                "refresh_token": "stored-refresh-token",
                "client_id": "client-id.apps.example",
                "client_secret": "client-secret",
                "token_uri": token_uri,
                "expiry": "2020-01-01T00:00:00Z",
                "scopes": ["https://www.googleapis.com/auth/gmail.modify"],
            }
        )
    )
    return path
