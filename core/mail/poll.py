"""One poll of the mailbox: the unit of work the clock runs on a schedule."""

from __future__ import annotations

import logging
import os
import socket
import threading
import uuid
from datetime import timedelta

import httplib2
import peewee as pw
from google.auth.exceptions import RefreshError
from googleapiclient.errors import HttpError

from core.config import ConfigError, Settings, get_settings
from core.db import database
from core.gmail import REAUTHORIZE_HINT
from core.mail.ingest import ingest_message
from core.mail.mailbox import Mailbox
from core.models import SyncState
from core.timeutil import utcnow

logger = logging.getLogger(__name__)

LOCK_KEY = "mail.poll.lock"
# A poll refreshes its lock every LOCK_REFRESH while it works. A lock older
# than LOCK_LEASE was left by a poller that died, so the next poll takes it.
LOCK_LEASE = timedelta(minutes=15)
LOCK_REFRESH = timedelta(minutes=1)

_process_lock = threading.Lock()


def poll_mailbox_once(
    settings: Settings | None = None, mailbox: Mailbox | None = None
) -> int:
    """Read the new mail once and return how many messages were handled.

    Never runs twice at once: a thread lock guards this process and a lease
    row in SyncState guards against other processes. No error escapes, so
    the clock keeps running; errors are logged.
    """
    settings = settings or get_settings()
    if not _process_lock.acquire(blocking=False):
        logger.info("mail poll skipped: the previous poll is still running")
        return 0
    try:
        with _connected():
            return _poll_with_lease(settings, mailbox)
    except Exception:  # noqa: BLE001 - the clock must survive any failure
        logger.exception("mail poll failed")
        return 0
    finally:
        _process_lock.release()


def _poll_with_lease(settings: Settings, mailbox: Mailbox | None) -> int:
    owner = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
    if not claim_lock(owner):
        logger.info("mail poll skipped: another process is polling")
        return 0
    try:
        return _poll(settings, mailbox or open_mailbox(settings), owner)
    finally:
        release_lock(owner)


def _poll(settings: Settings, mailbox: Mailbox, owner: str) -> int:
    handled = 0
    refreshed = utcnow()
    try:
        for incoming in mailbox.messages():
            ingest_message(incoming, settings)
            mailbox.acknowledge(incoming)
            handled += 1
            if utcnow() - refreshed >= LOCK_REFRESH:
                refresh_lock(owner)
                refreshed = utcnow()
        mailbox.commit()
    except RefreshError as exc:
        logger.error(
            "gmail rejected the stored credentials (%s); %s", exc, REAUTHORIZE_HINT
        )
    except ConfigError as exc:
        logger.error("mail poll cannot start: %s", exc)
    except HttpError as exc:
        logger.error(
            "gmail request failed: %s; the cursor stays where it was and the next "
            "poll tries again",
            exc,
        )
    except (OSError, httplib2.HttpLib2Error) as exc:
        logger.error(
            "reading mail from %s failed: %s; the next poll tries again",
            mailbox.source,
            exc,
        )
    if handled:
        logger.info("mail poll handled %s messages from %s", handled, mailbox.source)
    return handled


def open_mailbox(settings: Settings) -> Mailbox:
    """Return the source that MAIL_BACKEND selects."""
    if settings.mail_backend == "gmail":
        from core.mail.gmail_source import GmailMailbox

        return GmailMailbox(settings)
    from core.mail.maildir import MaildirMailbox

    return MaildirMailbox(settings.resolved_maildir)


# The poll lock


def claim_lock(owner: str) -> bool:
    """Take the poll lock if it is free or its lease ran out."""
    now = utcnow()
    try:
        with database.atomic():
            SyncState.create(key=LOCK_KEY, value=owner, updated_at=now)
        return True
    except pw.IntegrityError:
        # The row exists, so take it over only if it is free or stale.
        pass
    claimed = (
        SyncState.update(value=owner, updated_at=now)
        .where(
            (SyncState.key == LOCK_KEY)
            & ((SyncState.value == "") | (SyncState.updated_at < now - LOCK_LEASE))
        )
        .execute()
    )
    return claimed == 1


def refresh_lock(owner: str) -> None:
    (
        SyncState.update(updated_at=utcnow())
        .where((SyncState.key == LOCK_KEY) & (SyncState.value == owner))
        .execute()
    )


def release_lock(owner: str) -> None:
    (
        SyncState.update(value="")
        .where((SyncState.key == LOCK_KEY) & (SyncState.value == owner))
        .execute()
    )


class _connected:
    """Open a connection for the poll unless the caller already has one open."""

    def __enter__(self) -> None:
        self.opened = database.is_closed()
        if self.opened:
            database.connect()

    def __exit__(self, *exc: object) -> None:
        if self.opened and not database.is_closed():
            database.close()
