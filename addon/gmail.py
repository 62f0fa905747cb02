"""Read the message open in Gmail with the per-event tokens of the add-on."""

from __future__ import annotations

import base64
import html
from dataclasses import dataclass
from email import message_from_bytes, policy
from email.message import EmailMessage
from typing import Any, Callable, cast

from google.oauth2.credentials import Credentials
from googleapiclient.discovery import build

from core.emails import normalize_message_id

# Builds a Gmail API service from the user's credentials. The app keeps one in
# app.config["ADDON_GMAIL_SERVICE"] so tests can serve canned responses.
GmailServiceBuilder = Callable[[Credentials], Any]

ACCESS_TOKEN_HEADER = "X-Goog-Gmail-Access-Token"


@dataclass(frozen=True)
class OpenMessage:
    """What a new task takes from the open message."""

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
    return parse_message(data)


def parse_message(data: bytes) -> OpenMessage:
    """Take the subject, the Message-ID and an HTML body from a raw message."""
    message = cast(EmailMessage, message_from_bytes(data, policy=policy.default))
    return OpenMessage(
        subject=str(message.get("Subject", "") or ""),
        message_id=normalize_message_id(message.get("Message-ID")),
        html=_html_body(message),
    )


def _html_body(message: EmailMessage) -> str:
    part = message.get_body(preferencelist=("html", "plain"))
    if part is None:
        return ""
    try:
        text = part.get_content()
    except (LookupError, UnicodeDecodeError):
        # An unknown or wrong charset: keep the text readable rather than fail.
        payload = part.get_payload(decode=True) or b""
        text = payload.decode("utf-8", errors="replace")
    if part.get_content_type() == "text/html":
        return text
    return f"<pre>{html.escape(text)}</pre>"
