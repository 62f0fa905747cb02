"""One poll of the mailbox: the unit of work the clock runs on a schedule."""

from __future__ import annotations

import json
import logging
import os
import socket
import threading
import uuid
from dataclasses import dataclass
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
from core.timeutil import isoformat, utcnow

logger = logging.getLogger(__name__)

LOCK_KEY = "mail.poll.lock"
# A poll refreshes its lock every LOCK_REFRESH while it works. A lock older
# than LOCK_LEASE was left by a poller that died, so the next poll takes it.
LOCK_LEASE = timedelta(minutes=15)
LOCK_REFRESH = timedelta(minutes=1)

_process_lock = threading.Lock()


class PollSkipped(Exception):
    """The poll did not run because another poll holds the lock."""


@dataclass(frozen=True)
class LockHolder:
    """The process that holds the poll lock, as the lock row stores it."""

    host: str
    pid: int
    started_at: str
    token: str

    @classmethod
    def current(cls) -> LockHolder:
        return cls(
            host=socket.gethostname(),
            pid=os.getpid(),
            started_at=isoformat(utcnow()),
            token=uuid.uuid4().hex[:8],
        )

    @classmethod
    def parse(cls, value: str) -> LockHolder | None:
        try:
            fields = json.loads(value)
            return cls(
                host=str(fields["host"]),
                pid=int(fields["pid"]),
                started_at=str(fields["started_at"]),
                token=str(fields["token"]),
            )
        except (ValueError, TypeError, KeyError):
            return None

    @property
    def value(self) -> str:
        return json.dumps(
            {
                "host": self.host,
                "pid": self.pid,
                "started_at": self.started_at,
                "token": self.token,
            },
            sort_keys=True,
        )

    def is_dead_process_on_this_host(self) -> bool:
        """Return True when the holder ran on this host and its pid is gone.

        A reused pid makes a dead holder look alive, so its lease is then
        waited out; no live holder is ever taken for dead.
        """
        if self.host != socket.gethostname():
            return False
        try:
            os.kill(self.pid, 0)
        except ProcessLookupError:
            return True
        except PermissionError:
            # The pid exists but belongs to another user.
            return False
        return False

    def __str__(self) -> str:
        return f"process {self.pid} on {self.host} (started {self.started_at})"


def poll_mailbox_once(
    settings: Settings | None = None, mailbox: Mailbox | None = None
) -> int:
    """Read the new mail once and return how many messages were handled.

    Never runs twice at once: a thread lock guards this process and a lease
    row in SyncState guards against other processes. No error escapes, so
    the clock keeps running; errors are logged, and a poll skipped because
    of the lock is logged at WARNING.
    """
    try:
        return poll_mailbox_or_raise(settings, mailbox)
    except PollSkipped as exc:
        logger.warning("%s", exc)
        return 0


def poll_mailbox_or_raise(
    settings: Settings | None = None, mailbox: Mailbox | None = None
) -> int:
    """Read the new mail once, like ``poll_mailbox_once``.

    Raises PollSkipped, with a sentence naming the lock's holder and when
    its lease expires, when another poll holds the lock.
    """
    settings = settings or get_settings()
    if not _process_lock.acquire(blocking=False):
        raise PollSkipped(
            "Mail poll skipped: the previous poll in this process is still running."
        )
    try:
        with _connected():
            return _poll_with_lease(settings, mailbox)
    except PollSkipped:
        raise
    except Exception:  # noqa: BLE001 - the clock must survive any failure
        logger.exception("mail poll failed")
        return 0
    finally:
        _process_lock.release()


def _poll_with_lease(settings: Settings, mailbox: Mailbox | None) -> int:
    owner = LockHolder.current().value
    if not claim_lock(owner):
        _take_over_or_skip(owner)
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


def _take_over_or_skip(owner: str) -> None:
    """Take the lock from a dead holder on this host, or raise PollSkipped."""
    row = SyncState.get_or_none(SyncState.key == LOCK_KEY)
    if row is None or not row.value:
        # The holder released the lock after claim_lock looked.
        if claim_lock(owner):
            return
        row = SyncState.get_or_none(SyncState.key == LOCK_KEY)
        if row is None:
            raise PollSkipped("Mail poll skipped: the poll lock row is missing.")

    holder = LockHolder.parse(row.value)
    if holder is not None and holder.is_dead_process_on_this_host():
        # Only the row as it was read is replaced, so of two pollers that
        # both found the holder dead, one takes the lock.
        taken = (
            SyncState.update(value=owner, updated_at=utcnow())
            .where((SyncState.key == LOCK_KEY) & (SyncState.value == row.value))
            .execute()
        )
        if taken == 1:
            logger.warning(
                "took over the mail poll lock from %s, which no longer runs", holder
            )
            return

    expires = isoformat(row.updated_at + LOCK_LEASE)
    raise PollSkipped(
        f"Mail poll skipped: {holder or repr(row.value[:100])} holds the poll "
        f"lock, whose lease expires at {expires} unless that poll renews it. "
        "If that process is gone, run `flask --app wsgi poll-mail --force-unlock`."
    )


def force_unlock() -> str:
    """Release the poll lock whoever holds it; return the holder removed, or ""."""
    with _connected():
        row = SyncState.get_or_none(SyncState.key == LOCK_KEY)
        if row is None or not row.value:
            return ""
        (
            SyncState.update(value="")
            .where((SyncState.key == LOCK_KEY) & (SyncState.value == row.value))
            .execute()
        )
    holder = str(LockHolder.parse(row.value) or row.value[:100])
    logger.warning("mail poll lock of %s released by force", holder)
    return holder


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
