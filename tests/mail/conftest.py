"""Fixtures of the mail reader tests: a Maildir to drop emails into and
helpers that write emails the way mail clients do."""

from __future__ import annotations

import itertools
from email.message import EmailMessage
from email.utils import format_datetime
from datetime import datetime, timezone
from pathlib import Path

import pytest

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
    message["Date"] = format_datetime(datetime(2026, 12, 1, 9, 0, tzinfo=timezone.utc))
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


class Maildir:
    """The test's Maildir folder, where emails are dropped as files."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.mailbox = MaildirMailbox(path)
        self._names = itertools.count(1)

    def drop(self, raw: bytes, name: str | None = None) -> str:
        name = name or f"{next(self._names):06d}.test.eml"
        (self.path / "new" / name).write_bytes(raw)
        return name

    def new(self) -> list[str]:
        return sorted(p.name for p in (self.path / "new").iterdir())

    def cur(self) -> list[str]:
        return sorted(p.name for p in (self.path / "cur").iterdir())


@pytest.fixture
def maildir(settings) -> Maildir:
    return Maildir(settings.resolved_maildir)
