"""Read new mail from Gmail with incremental sync over the history API.

The cursor is the mailbox history id stored in SyncState. Each poll lists
the messages added to INBOX since the cursor (``users.history.list``). When
Gmail returns 404 because the history id is too old, the poll falls back to
a bounded full sync (``users.messages.list``, at most GMAIL_FULL_SYNC_LIMIT
messages) and then stores the history id read before that listing. See
https://developers.google.com/gmail/api/guides/sync
"""

from __future__ import annotations

import base64
import json
import logging
import random
import socket
import time
from collections.abc import Callable, Iterator
from typing import Any

import httplib2
from googleapiclient.errors import HttpError

from core.config import Settings
from core.gmail import build_gmail_service
from core.mail.mailbox import IncomingMessage, Mailbox
from core.models import SyncState
from core.timeutil import utcnow

logger = logging.getLogger(__name__)

HISTORY_KEY = "gmail.history_id"
PAGE_SIZE = 500
MAX_ATTEMPTS = 5
FIRST_BACKOFF_SECONDS = 1.0
RATE_LIMIT_REASONS = {"rateLimitExceeded", "userRateLimitExceeded"}
TRANSIENT_ERRORS = (OSError, socket.timeout, httplib2.HttpLib2Error)


class GmailMailbox(Mailbox):
    """Messages of the Gmail mailbox that arrived in INBOX since the cursor."""

    source = "gmail"

    def __init__(
        self,
        settings: Settings,
        service: Any = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.settings = settings
        self.user = settings.gmail_user
        self._service = service
        self._sleep = sleep
        self._next_cursor: str | None = None

    @property
    def service(self) -> Any:
        if self._service is None:
            self._service = build_gmail_service(self.settings)
        return self._service

    def messages(self) -> Iterator[IncomingMessage]:
        self._next_cursor = None
        ids, cursor = self._new_message_ids()
        for gmail_id in ids:
            incoming = self._fetch(gmail_id)
            if incoming is not None:
                yield incoming
        self._next_cursor = cursor

    def commit(self) -> None:
        if self._next_cursor is None:
            return
        save_cursor(self._next_cursor)
        logger.debug("gmail history id is now %s", self._next_cursor)

    def _new_message_ids(self) -> tuple[list[str], str]:
        cursor = load_cursor()
        if cursor is None:
            logger.info("no gmail history id stored yet; running a full sync")
            return self._full_sync()
        try:
            return self._history_since(cursor)
        except HttpError as exc:
            if exc.resp.status != 404:
                raise
            logger.warning(
                "gmail history id %s is too old (404); running a full sync of at "
                "most %s messages",
                cursor,
                self.settings.gmail_full_sync_limit,
            )
            return self._full_sync()

    def _history_since(self, cursor: str) -> tuple[list[str], str]:
        history = self.service.users().history()
        ids: list[str] = []
        page_token = None
        latest = cursor
        while True:
            response = self._execute(
                history.list(
                    userId=self.user,
                    startHistoryId=cursor,
                    historyTypes=["messageAdded"],
                    labelId="INBOX",
                    maxResults=PAGE_SIZE,
                    pageToken=page_token,
                )
            )
            for record in response.get("history", []):
                for added in record.get("messagesAdded", []):
                    ids.append(added["message"]["id"])
            latest = str(response.get("historyId") or latest)
            page_token = response.get("nextPageToken")
            if not page_token:
                break
        return list(dict.fromkeys(ids)), latest

    def _full_sync(self) -> tuple[list[str], str]:
        # The history id is read before listing, so a message that arrives
        # during the listing is found again by the next incremental sync
        # rather than missed.
        profile = self._execute(self.service.users().getProfile(userId=self.user))
        limit = self.settings.gmail_full_sync_limit
        ids: list[str] = []
        page_token = None
        while len(ids) < limit:
            response = self._execute(
                self.service.users()
                .messages()
                .list(
                    userId=self.user,
                    labelIds=["INBOX"],
                    maxResults=min(PAGE_SIZE, limit - len(ids)),
                    pageToken=page_token,
                )
            )
            ids.extend(item["id"] for item in response.get("messages", []))
            page_token = response.get("nextPageToken")
            if not page_token:
                break
        # messages.list returns the newest first; threads are read oldest first.
        return list(reversed(ids[:limit])), str(profile["historyId"])

    def _fetch(self, gmail_id: str) -> IncomingMessage | None:
        request = (
            self.service.users()
            .messages()
            .get(userId=self.user, id=gmail_id, format="raw")
        )
        try:
            response = self._execute(request)
        except HttpError as exc:
            if exc.resp.status == 404:
                logger.info("gmail message %s was deleted before it was read", gmail_id)
                return None
            raise
        raw = base64.urlsafe_b64decode(_padded(response["raw"]))
        return IncomingMessage(
            source=self.source,
            source_id=gmail_id,
            raw=raw,
            thread_id=str(response.get("threadId", "")),
        )

    def _execute(self, request: Any) -> dict[str, Any]:
        """Execute a request, retrying 429, 5xx and network errors with backoff."""
        for attempt in range(1, MAX_ATTEMPTS + 1):
            try:
                return request.execute()
            except HttpError as exc:
                if attempt == MAX_ATTEMPTS or not _is_transient(exc):
                    raise
                error: Exception = exc
            except TRANSIENT_ERRORS as exc:
                if attempt == MAX_ATTEMPTS:
                    raise
                error = exc
            delay = FIRST_BACKOFF_SECONDS * 2 ** (attempt - 1) * (1 + random.random())
            logger.warning(
                "gmail request %s failed (%s); retry %s of %s in %.1f s",
                request.methodId,
                error,
                attempt,
                MAX_ATTEMPTS - 1,
                delay,
            )
            self._sleep(delay)
        raise AssertionError("unreachable")


def _is_transient(exc: HttpError) -> bool:
    status = exc.resp.status
    if status == 429 or status >= 500:
        return True
    if status == 403:
        return bool(_error_reasons(exc) & RATE_LIMIT_REASONS)
    return False


def _error_reasons(exc: HttpError) -> set[str]:
    try:
        body = json.loads(exc.content.decode("utf-8"))
        return {item.get("reason", "") for item in body["error"].get("errors", [])}
    except (ValueError, KeyError, AttributeError, TypeError):
        return set()


def _padded(data: str) -> str:
    # Gmail may leave out the base64 padding.
    return data + "=" * (-len(data) % 4)


def load_cursor() -> str | None:
    row = SyncState.get_or_none(SyncState.key == HISTORY_KEY)
    return row.value if row is not None and row.value else None


def save_cursor(value: str) -> None:
    now = utcnow()
    (
        SyncState.insert(key=HISTORY_KEY, value=value, updated_at=now)
        .on_conflict(
            conflict_target=[SyncState.key],
            update={SyncState.value: value, SyncState.updated_at: now},
        )
        .execute()
    )
