"""Outbound email transports: an outbox folder of .eml files, or the Gmail API.

Both take a rendered ``EmailMessage`` and return a provider message id. Every
failure is raised as ``DeliveryError``, whose ``permanent`` flag is True
when trying again cannot help.
"""

from __future__ import annotations

import base64
import logging
import os
from dataclasses import dataclass
from email import message_from_binary_file, policy
from email.message import EmailMessage
from pathlib import Path
from typing import Any, Protocol

from core.config import Settings

logger = logging.getLogger(__name__)

# Gmail returns these for "try again later". A 403 counts only with one of
# these reasons: https://developers.google.com/gmail/api/guides/handle-errors
TRANSIENT_STATUSES = frozenset({429, 500, 502, 503, 504})
TRANSIENT_403_REASONS = frozenset({"rateLimitExceeded", "userRateLimitExceeded"})


class DeliveryError(Exception):
    """Sending failed; ``permanent`` is True when a retry cannot succeed."""

    def __init__(self, message: str, *, permanent: bool) -> None:
        super().__init__(message)
        self.message = message
        self.permanent = permanent


@dataclass(frozen=True)
class Outgoing:
    """One rendered email, with what the transport needs besides its bytes."""

    delivery_id: int
    message: EmailMessage
    thread_id: str = ""

    @property
    def message_id(self) -> str:
        return str(self.message["Message-ID"])


class Transport(Protocol):
    # True when find_sent() is exact, so a resend after a crash can never
    # duplicate an email.
    confirms_sends: bool

    def send(self, outgoing: Outgoing) -> str:
        """Send the email and return the provider's id for it."""
        ...

    def find_sent(self, outgoing: Outgoing) -> str | None:
        """Return the provider id if this email was already sent, else None."""
        ...


class OutboxTransport:
    """Write each email as ``<delivery id>.eml`` into a folder.

    The file appears atomically (written to a hidden temporary file, synced,
    then renamed), so a reader never sees half an email and a crash leaves
    either the whole file or none.
    """

    confirms_sends = True

    def __init__(self, directory: Path) -> None:
        self.directory = Path(directory)

    def path_for(self, delivery_id: int) -> Path:
        return self.directory / f"{delivery_id:08d}.eml"

    def send(self, outgoing: Outgoing) -> str:
        path = self.path_for(outgoing.delivery_id)
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            if path.exists() and self.find_sent(outgoing) is None:
                _keep_aside(path)
            _write_atomically(path, outgoing.message.as_bytes())
        except OSError as exc:
            # A full or read-only disk can recover, so this is worth a retry.
            raise DeliveryError(
                f"Writing {path} failed: {exc}", permanent=False
            ) from exc
        return path.name

    def find_sent(self, outgoing: Outgoing) -> str | None:
        path = self.path_for(outgoing.delivery_id)
        try:
            with path.open("rb") as handle:
                written = message_from_binary_file(handle, policy=policy.default)
        except FileNotFoundError:
            return None
        if str(written["Message-ID"]) != outgoing.message_id:
            return None
        return path.name


def _keep_aside(path: Path) -> None:
    """Rename an email of an earlier delivery that had the same id.

    SQLite gives a new row the id of the last row deleted, so after an admin
    deletes the newest task, a new delivery can get the id of one already
    written here. Its email stays, as ``<id>.earlier-<n>.eml``.
    """
    number = 1
    while (aside := path.with_name(f"{path.stem}.earlier-{number}.eml")).exists():
        number += 1
    os.replace(path, aside)


def _write_atomically(path: Path, data: bytes) -> None:
    # One name per email, not a random one: only the sender holding the
    # delivery's claim writes it, and a file left by a sender that died is
    # truncated and written again.
    temporary = path.with_name(f".{path.name}.tmp")
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        with os.fdopen(descriptor, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    directory = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)


class GmailTransport:
    """Send with ``users.messages.send`` as a reply in the task's Gmail thread."""

    # Gmail's search index can lag behind a send, so find_sent() may miss a
    # message that went out a moment ago.
    confirms_sends = False

    def __init__(self, settings: Settings, service: Any = None) -> None:
        self.settings = settings
        self._service = service

    @property
    def service(self) -> Any:
        if self._service is None:
            from core.gmail import build_gmail_service

            self._service = build_gmail_service(self.settings)
        return self._service

    def send(self, outgoing: Outgoing) -> str:
        raw = base64.urlsafe_b64encode(outgoing.message.as_bytes()).decode("ascii")
        body = {"raw": raw}
        if is_gmail_thread_id(outgoing.thread_id):
            body["threadId"] = outgoing.thread_id
        request = (
            self.service.users()
            .messages()
            .send(userId=self.settings.gmail_user, body=body)
        )
        response = _execute(request, "users.messages.send")
        return str(response.get("id", ""))

    def find_sent(self, outgoing: Outgoing) -> str | None:
        message_id = outgoing.message_id.strip("<>")
        request = (
            self.service.users()
            .messages()
            .list(
                userId=self.settings.gmail_user,
                q=f"rfc822msgid:{message_id}",
                includeSpamTrash=True,
            )
        )
        try:
            response = _execute(request, "users.messages.list")
        except DeliveryError as exc:
            logger.warning(
                "could not check whether delivery %s was sent: %s",
                outgoing.delivery_id,
                exc.message,
            )
            return None
        messages = response.get("messages") or []
        return str(messages[0]["id"]) if messages else None


def is_gmail_thread_id(thread_id: str) -> bool:
    """Tell a Gmail thread id from a Message-ID used as a thread key."""
    return bool(thread_id) and "@" not in thread_id and "<" not in thread_id


def _execute(request: Any, method: str) -> dict:
    from google.auth.exceptions import RefreshError, TransportError
    from googleapiclient.errors import HttpError

    try:
        return request.execute(num_retries=0)
    except HttpError as exc:
        status = exc.status_code or int(exc.resp.status)
        reasons = {
            str(detail.get("reason"))
            for detail in exc.error_details or []
            if isinstance(detail, dict)
        }
        transient = status in TRANSIENT_STATUSES or (
            status == 403 and reasons & TRANSIENT_403_REASONS
        )
        raise DeliveryError(
            f"Gmail {method} failed with HTTP {status}: {exc.reason}",
            permanent=not transient,
        ) from exc
    except RefreshError as exc:
        from core.gmail import REAUTHORIZE_HINT

        raise DeliveryError(
            f"Gmail rejected the stored credentials ({exc}); {REAUTHORIZE_HINT}.",
            permanent=True,
        ) from exc
    except (TimeoutError, ConnectionError, TransportError) as exc:
        raise DeliveryError(
            f"Gmail {method} timed out or lost the connection: {exc}",
            permanent=False,
        ) from exc


def build_transport(settings: Settings, gmail_service: Any = None) -> Transport:
    """Return the transport that MAIL_TRANSPORT selects."""
    if settings.mail_transport == "gmail":
        return GmailTransport(settings, gmail_service)
    return OutboxTransport(settings.resolved_outbox_dir)
