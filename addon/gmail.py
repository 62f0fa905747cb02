"""Read the message open in Gmail with the per-event tokens of the add-on."""

from __future__ import annotations

import base64
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from google.oauth2.credentials import Credentials
from googleapiclient.discovery import build

from core.emails import normalize_message_id
from core.mail.parse import parse_message

# Builds a Gmail API service from the user's credentials. The app keeps one in
# app.config["ADDON_GMAIL_SERVICE"] so tests can serve canned responses.
GmailServiceBuilder = Callable[[Credentials], Any]

ACCESS_TOKEN_HEADER = "X-Goog-Gmail-Access-Token"


@dataclass(frozen=True)
class OpenMessage:
    """Subject, Message-ID and HTML body of the open message, as tasks store them."""

    subject: str
    message_id: str
    html: str


def build_gmail_service(credentials: Credentials) -> Any:
    return build("gmail", "v1", credentials=credentials, cache_discovery=False)


def read_open_message(
    build_service: GmailServiceBuilder,
    user_oauth_token: str,
    message_id: str,
    access_token: str,
) -> OpenMessage:
    """Fetch the open message in raw form and parse it.

    Gmail accepts the add-on's scope ``gmail.addons.current.message.readonly``
    only together with the event's access token in ``X-Goog-Gmail-Access-Token``.
    Raises googleapiclient.errors.HttpError when Gmail rejects the request.
    """
    service = build_service(Credentials(token=user_oauth_token))
    request = service.users().messages().get(userId="me", id=message_id, format="raw")
    request.headers[ACCESS_TOKEN_HEADER] = access_token
    response = request.execute(num_retries=2)

    raw = response.get("raw", "")
    data = base64.urlsafe_b64decode(raw + "=" * (-len(raw) % 4))
    return parse_open_message(data)


def parse_open_message(data: bytes) -> OpenMessage:
    """Take the subject, the Message-ID and the sanitized HTML body of a raw message."""
    parsed = parse_message(data)
    # The mail reader invents a Message-ID for mail without one; such an id
    # finds nothing in Gmail, so the task keeps none.
    message_id = parsed.message_id if parsed.has_message_id else ""
    return OpenMessage(
        subject=parsed.subject,
        message_id=normalize_message_id(message_id),
        html=parsed.html,
    )
