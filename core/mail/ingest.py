"""Store one incoming email: create or update its task, or record why not.

Each message is handled in one transaction. It first looks for the
message's MailMessage row and stops if that row is of the same email (the
same source id or content fingerprint), and it ends by inserting that row.
The unique index on Message-ID makes a second attempt at the same message
(a re-poll, a crash before the source was acknowledged, two pollers) stop
or roll back, so nothing is created or updated twice.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
from dataclasses import dataclass, replace
from datetime import datetime
from pathlib import Path

import peewee as pw

from core.config import Settings
from core.db import database
from core.emails import normalize_message_id
from core.errors import Conflict, InvalidField
from core.mail.classify import (
    BOUNCE,
    DELIVERY_HEADER,
    OWN,
    Verdict,
    classify,
    read_bounce,
)
from core.mail.mailbox import IncomingMessage
from core.mail.models import MessageFingerprint, QuarantinedMessage
from core.mail.parse import (
    ParsedMessage,
    derived_message_id,
    fingerprint,
    generated_message_id,
    header_text,
    parse_message,
    peek_message_id,
)
from core.models import Delivery, Event, MailMessage, Task
from core.sqlcache import cached_execute, cached_select
from core.tasks import (
    MAX_SUBJECT_LENGTH,
    Actor,
    create_task,
    signals_after_commit,
    update_task,
)
from core.timeutil import utcnow

logger = logging.getLogger(__name__)

CREATED = "created"
UPDATED = "updated"
IGNORED = "ignored"
QUARANTINED = "quarantined"
DUPLICATE = "duplicate"


@dataclass(frozen=True)
class Outcome:
    """The result of handling one message: its outcome, reason and task."""

    outcome: str
    message_id: str
    reason: str = ""
    task_id: int | None = None
    thread_id: str = ""


class _AlreadySeen(Exception):
    """The message's row exists: another poll or poller handled it."""


def ingest_message(
    incoming: IncomingMessage, settings: Settings, now: datetime | None = None
) -> Outcome:
    """Handle one message; a message that cannot be handled is quarantined.

    Raises only when the quarantine itself cannot be written (for example
    the database is down), so the caller leaves the message in its source.
    """
    now = now or utcnow()
    size = len(incoming.raw)
    if size > settings.max_message_bytes:
        error = (
            f"The message is {size} bytes, over MAX_MESSAGE_BYTES="
            f"{settings.max_message_bytes}."
        )
        return quarantine(incoming, error, peek_message_id(incoming.raw), settings, now)

    try:
        parsed = parse_message(incoming.raw)
    except Exception as exc:  # noqa: BLE001 - any parser failure quarantines
        error = f"Parsing failed: {exc!r}"
        message_id = peek_message_id(incoming.raw)
        return quarantine(incoming, error, message_id, settings, now, exc)

    try:
        with signals_after_commit(), database.atomic():
            return _store(parsed, incoming, settings, now)
    except _AlreadySeen:
        logger.debug("message %s was already handled", parsed.message_id)
        return Outcome(DUPLICATE, parsed.message_id, "already handled")
    except Exception as exc:  # noqa: BLE001 - one bad message must not stop the poll
        error = f"Storing failed: {exc!r}"
        return quarantine(incoming, error, parsed.message_id, settings, now, exc)


def _store(
    parsed: ParsedMessage, incoming: IncomingMessage, settings: Settings, now: datetime
) -> Outcome:
    source_id = f"{incoming.source}:{incoming.source_id}"[:255]
    content_fingerprint = fingerprint(parsed)
    seen = _row_for(parsed.message_id)
    if seen is not None:
        if seen.direction == "out":
            return _claim_own(seen, source_id)
        if _is_same_email(seen, source_id, content_fingerprint):
            raise _AlreadySeen
        derived = derived_message_id(content_fingerprint)
        if _row_for(derived) is not None:
            raise _AlreadySeen
        parsed = _with_derived_id(parsed, seen, derived)

    verdict = _own_delivery(parsed) or classify(parsed)
    if verdict.kind == BOUNCE:
        outcome = _handle_bounce(parsed, verdict, now)
    elif not verdict.makes_task:
        outcome = _ignore_in_thread(parsed, verdict)
    else:
        outcome = _handle_person(parsed, incoming, settings, now)
    _record(parsed, incoming, source_id, outcome, now)
    _record_fingerprint(parsed.message_id, content_fingerprint)
    return outcome


def _is_same_email(seen: MailMessage, source_id: str, content_fingerprint: str) -> bool:
    """Return True when ``seen`` is the row of this very email.

    The same Maildir file or Gmail id, or the same fingerprint, means a
    re-delivery. A row without a fingerprint (stored before fingerprints
    were kept, or quarantined) is taken for the same email, so nothing old
    is read twice.
    """
    if seen.source_id == source_id:
        return True
    stored = MessageFingerprint.get_or_none(
        MessageFingerprint.message_id == seen.message_id
    )
    return stored is None or stored.fingerprint == content_fingerprint


def _with_derived_id(
    parsed: ParsedMessage, seen: MailMessage, derived: str
) -> ParsedMessage:
    """Give an email whose Message-ID another email has the id ``derived``.

    Replies that name the shared Message-ID still join the first email's task.
    """
    logger.warning(
        "mail %s reuses the Message-ID of another email (stored from %s) with "
        "other content; reading it as a new email with the id %s",
        parsed.message_id,
        seen.source_id or "an earlier poll",
        derived,
    )
    return replace(parsed, message_id=derived)


def _record_fingerprint(message_id: str, content_fingerprint: str) -> None:
    values = [message_id, content_fingerprint]
    cached_execute(
        "insert-mail-fingerprint",
        lambda: MessageFingerprint.insert_many(
            [values],
            fields=[MessageFingerprint.message_id, MessageFingerprint.fingerprint],
        ),
        values,
    )


def _ignore_in_thread(parsed: ParsedMessage, verdict: Verdict) -> Outcome:
    """Ignore a machine's message, noting the task of the thread it replies to.

    Linking the row lets a later reply that names only this message (for
    example, a reply to an out-of-office notice) still find the task.
    """
    task = _task_for_ids(parsed.reply_ids)
    if task is None:
        return Outcome(IGNORED, parsed.message_id, verdict.reason)
    return Outcome(IGNORED, parsed.message_id, verdict.reason, task.id, task.thread_id)


def _own_delivery(parsed: ParsedMessage) -> Verdict | None:
    """Return an OWN verdict when DELIVERY_HEADER names the delivery of this email.

    Anyone can write the header, so it counts only when its delivery id
    exists and that delivery was sent with this message's Message-ID.
    """
    value = header_text(parsed.message, DELIVERY_HEADER).strip()
    if not value:
        return None

    delivery = None
    if value.isascii() and value.isdigit() and len(value) <= 18:
        delivery = Delivery.get_or_none(Delivery.id == int(value))
    sent_id = normalize_message_id(delivery.message_id) if delivery else ""
    if sent_id and sent_id == parsed.message_id:
        return Verdict(OWN, f"sent by threadtask ({DELIVERY_HEADER}: {value})")

    logger.warning(
        "mail %s carries %s: %r, which names no delivery sent with this "
        "Message-ID; reading it as a person's email",
        parsed.message_id,
        DELIVERY_HEADER,
        value[:64],
    )
    return None


_OWN_REASON = "sent by threadtask (its Message-ID was recorded when it was sent)"


def _row_for(message_id: str) -> MailMessage | None:
    rows = cached_select(
        MailMessage,
        "mail-message-by-id",
        lambda: MailMessage.select().where(MailMessage.message_id == ""),
        [message_id],
    )
    return next(iter(rows), None)


def _claim_own(sent: MailMessage, source_id: str) -> Outcome:
    """Note on the sender's row that our own message was read back, once."""
    # The conditional update lets only one poll claim the message. The
    # sender's own outcome, if it wrote one, is kept.
    claimed = (
        MailMessage.update(
            source_id=source_id,
            outcome=sent.outcome or IGNORED,
            reason=_OWN_REASON,
        )
        .where((MailMessage.id == sent.id) & (MailMessage.source_id == ""))
        .execute()
    )
    if claimed != 1:
        raise _AlreadySeen
    logger.info("mail %s is our own, read back: ignored", sent.message_id)
    return Outcome(IGNORED, sent.message_id, _OWN_REASON, sent.task_id)


_RECORD_FIELDS = [
    MailMessage.message_id,
    MailMessage.direction,
    MailMessage.source_id,
    MailMessage.thread_id,
    MailMessage.task,
    MailMessage.outcome,
    MailMessage.reason,
    MailMessage.sender,
    MailMessage.subject,
    MailMessage.attachments,
    MailMessage.created_at,
]


def _record(
    parsed: ParsedMessage,
    incoming: IncomingMessage,
    source_id: str,
    outcome: Outcome,
    now: datetime,
) -> None:
    """Insert the message's row; the unique Message-ID makes this the claim.

    Two pollers that both got past ``_row_for`` meet here: the second insert
    fails, and its whole transaction, task change included, is rolled back.
    The caller delays ``task_changed`` until the commit, so subscribers never
    hear of that rolled-back change.
    """
    values = [
        parsed.message_id,
        "in",
        source_id,
        (outcome.thread_id or incoming.thread_id)[:255],
        outcome.task_id,
        outcome.outcome,
        outcome.reason,
        parsed.sender[:320],
        parsed.subject,
        json.dumps([item.as_dict() for item in parsed.attachments]),
        now,
    ]
    try:
        cached_execute(
            "insert-mail-message",
            lambda: MailMessage.insert_many([values], fields=_RECORD_FIELDS),
            values,
        )
    except pw.IntegrityError:
        raise _AlreadySeen from None
    logger.info(
        "mail %s from %s: %s%s%s",
        parsed.message_id,
        parsed.sender or "(no sender)",
        outcome.outcome,
        f" task {outcome.task_id}" if outcome.task_id else "",
        f" ({outcome.reason})" if outcome.reason else "",
    )


# People


def _handle_person(
    parsed: ParsedMessage, incoming: IncomingMessage, settings: Settings, now: datetime
) -> Outcome:
    mailbox_address = settings.mailbox_address.lower()
    if not parsed.sender:
        return Outcome(IGNORED, parsed.message_id, "no valid sender address in From")
    if parsed.sender == mailbox_address:
        return Outcome(
            IGNORED, parsed.message_id, "sent from the tracker's own address"
        )

    thread = find_thread(parsed, incoming.thread_id)
    if thread.deleted and thread.task is None:
        return Outcome(
            IGNORED, parsed.message_id, "reply in a thread whose task was deleted"
        )
    actor = Actor(email=parsed.sender, channel="mail", is_service=True)
    if thread.task is not None:
        return _update(actor, thread.task, parsed, now)

    assignee, unassigned_reason = _assignee(parsed, mailbox_address, settings)
    fields = {
        "creator_email": parsed.sender,
        "assigned_to": assignee,
        "subject": parsed.subject[:MAX_SUBJECT_LENGTH],
        "thread_id": incoming.thread_id or parsed.thread_root,
        "latest_message_id": parsed.message_id,
        "html": parsed.html,
    }
    try:
        task = _create(actor, fields, now)
    except Conflict as exc:
        # The thread root names a task that this message did not reference,
        # such as a reply that arrived before the message it replies to.
        if exc.existing_task_id is None:
            raise
        return _update(actor, Task.get_by_id(exc.existing_task_id), parsed, now)
    except InvalidField as exc:
        if exc.field != "assigned_to":
            return Outcome(
                IGNORED, parsed.message_id, f"not accepted as a task: {exc.detail}"
            )
        # An address the reader accepted and the task rules reject must not
        # lose the email: the task is created without an assignee.
        unassigned_reason = f"no assignee: {exc.detail}"
        task = _create(actor, {**fields, "assigned_to": ""}, now)
    if unassigned_reason:
        logger.warning(
            "mail %s: task %s created without an assignee (%s)",
            parsed.message_id,
            task.id,
            unassigned_reason,
        )
    return Outcome(
        CREATED, parsed.message_id, unassigned_reason, task.id, task.thread_id
    )


def _create(actor: Actor, fields: dict[str, str], now: datetime) -> Task:
    # A savepoint, so a rejected first try leaves the transaction usable.
    with database.atomic():
        return create_task(actor, fields, now=now)


def _update(actor: Actor, task: Task, parsed: ParsedMessage, now: datetime) -> Outcome:
    # A reply updates the body and the latest Message-ID only: email cannot
    # close, fix or reopen a task. A reply without a body keeps the old one.
    fields = {"latest_message_id": parsed.message_id}
    if parsed.html:
        fields["html"] = parsed.html
    update_task(actor, task.id, fields, now=now)
    return Outcome(UPDATED, parsed.message_id, "", task.id, task.thread_id)


def _assignee(
    parsed: ParsedMessage, mailbox_address: str, settings: Settings
) -> tuple[str, str]:
    """Return the first To or Cc address that is neither the tracker nor the sender.

    When that address is invalid, the task gets no assignee, rather than the
    next address in the list, and the second value gives the reason.
    """
    allowed = settings.allowed_email_domains
    for recipient in parsed.recipients:
        address = recipient.address
        if recipient.error:
            return "", (
                f"no assignee: the {recipient.header} address "
                f"{recipient.text[:100]!r} is invalid ({recipient.error})"
            )
        if address in (mailbox_address, parsed.sender):
            continue
        if allowed and address.rsplit("@", 1)[-1] not in allowed:
            continue
        return address, ""
    return "", ""


@dataclass
class Thread:
    """The task a message belongs to, if any, and whether it was deleted."""

    task: Task | None = None
    deleted: bool = False


def find_thread(parsed: ParsedMessage, provider_thread_id: str = "") -> Thread:
    """Find the task of the conversation ``parsed`` belongs to.

    The provider's thread id (Gmail) is tried first. Then every id in
    In-Reply-To and References is matched against the Message-IDs seen or
    sent for a task, so a reply to any earlier message joins, whatever its
    subject. Subjects are never compared.
    """
    if provider_thread_id:
        task = Task.for_thread(provider_thread_id)
        if task is not None:
            return Thread(task)

    ids = parsed.reply_ids
    task = _task_for_ids(ids)
    if task is not None:
        return Thread(task)
    if not ids and not provider_thread_id:
        return Thread()

    seen = MailMessage.select(MailMessage.task, MailMessage.outcome).where(
        (MailMessage.message_id.in_(ids))
        | (
            (MailMessage.thread_id == provider_thread_id)
            & (MailMessage.thread_id != "")
        )
    )
    deleted = any(
        row.task_id is None and row.outcome in (CREATED, UPDATED) for row in seen
    )
    return Thread(None, deleted)


def _task_for_ids(ids: list[str]) -> Task | None:
    if not ids:
        return None
    count = len(ids)
    rows = cached_select(
        Task,
        f"task-by-message-ids-{count}",
        lambda: (
            Task.select()
            .join(MailMessage, on=(MailMessage.task == Task.id))
            .where(MailMessage.message_id.in_([""] * count))
            .order_by(Task.id)
            .limit(1)
        ),
        [*ids, 1],
    )
    task = next(iter(rows), None)
    if task is not None:
        return task
    delivery = (
        Delivery.select(Delivery.task).where(Delivery.message_id.in_(ids)).first()
    )
    if delivery is not None:
        return Task.get_by_id(delivery.task_id)
    # Tasks made through the API or the add-on name a Message-ID as their
    # thread id or latest message without any MailMessage row.
    return (
        Task.select()
        .where(Task.thread_id.in_(ids) | Task.latest_message_id.in_(ids))
        .order_by(Task.id)
        .first()
    )


# Bounces


def _handle_bounce(parsed: ParsedMessage, verdict: Verdict, now: datetime) -> Outcome:
    """Attach a bounce of one of our emails to its delivery and task."""
    report = read_bounce(parsed)
    if not report.original_ids:
        return Outcome(IGNORED, parsed.message_id, verdict.reason)

    delivery = (
        Delivery.select().where(Delivery.message_id.in_(report.original_ids)).first()
    )
    task_id = delivery.task_id if delivery else _sent_task_id(report.original_ids)
    if task_id is None:
        return Outcome(IGNORED, parsed.message_id, verdict.reason)

    if report.delayed_only:
        detail = f"delivery delayed: {report.diagnostic}"
    else:
        detail = f"delivery failed: {report.diagnostic or verdict.reason}"
        if delivery is not None:
            error = _more_specific(delivery.error, report.diagnostic or verdict.reason)
            Delivery.update(
                status="failed",
                error=error,
                updated_at=now,
            ).where(Delivery.id == delivery.id).execute()
    Event.create(
        task=task_id,
        actor=parsed.sender or "mailer-daemon",
        channel="mail",
        field="delivery",
        old_value=None if delivery is None else delivery.status,
        new_value=detail[:2000],
        created_at=now,
    )
    where = f"delivery {delivery.id}" if delivery else "a sent message"
    reason = f"{verdict.reason}; {detail[:300]} (attached to {where} of task {task_id})"
    return Outcome(IGNORED, parsed.message_id, reason, task_id)


# An enhanced status code such as 5.1.1 (RFC 3463), or a basic SMTP reply
# code such as 550 (RFC 5321 section 4.2).
_ENHANCED_STATUS = re.compile(r"\b[245]\.\d{1,3}\.\d{1,3}\b")
_REPLY_CODE = re.compile(r"\b[245]\d\d\b")


def _more_specific(stored: str, new: str) -> str:
    """Return the more specific of two bounce diagnostics, the stored one on a tie.

    A later bounce of the same email, often a plain-text notice written in
    prose, must not replace a diagnostic that names the status code. Every
    bounce is also recorded in full as an event of the task.
    """
    if _specificity(new) > _specificity(stored):
        return new
    return stored or new


def _specificity(diagnostic: str) -> int:
    if _ENHANCED_STATUS.search(diagnostic):
        return 2
    if _REPLY_CODE.search(diagnostic):
        return 1
    return 0


def _sent_task_id(ids: list[str]) -> int | None:
    row = (
        MailMessage.select(MailMessage.task)
        .where(
            MailMessage.message_id.in_(ids)
            & (MailMessage.direction == "out")
            & MailMessage.task.is_null(False)
        )
        .first()
    )
    return row.task_id if row is not None else None


# Quarantine


def quarantine(
    incoming: IncomingMessage,
    error: str,
    message_id: str,
    settings: Settings,
    now: datetime,
    exc: BaseException | None = None,
) -> Outcome:
    """Keep the raw bytes under DATA_DIR/quarantine and record the error.

    ``exc``, when given, is logged with its traceback.
    """
    message_id = message_id or generated_message_id(incoming.raw)
    path = _write_raw(settings.quarantine_dir, incoming, now)
    with database.atomic():
        try:
            with database.atomic():
                QuarantinedMessage.create(
                    source=incoming.source,
                    source_id=incoming.source_id[:255],
                    message_id=message_id,
                    raw_path=str(path),
                    size=len(incoming.raw),
                    error=error,
                    created_at=now,
                )
        except pw.IntegrityError:
            # Quarantined by an earlier poll that stopped before acknowledging.
            return Outcome(DUPLICATE, message_id, "already quarantined")
        try:
            with database.atomic():
                MailMessage.create(
                    message_id=message_id,
                    direction="in",
                    source_id=f"{incoming.source}:{incoming.source_id}"[:255],
                    thread_id=incoming.thread_id[:255],
                    outcome=QUARANTINED,
                    reason=error,
                    created_at=now,
                )
        except pw.IntegrityError:
            logger.debug("message %s already has a row", message_id)
    logger.error(
        "quarantined mail %s (%s %s), raw bytes in %s: %s",
        message_id,
        incoming.source,
        incoming.source_id,
        path,
        error,
        exc_info=exc,
    )
    return Outcome(QUARANTINED, message_id, error)


def _write_raw(directory: Path, incoming: IncomingMessage, now: datetime) -> Path:
    # Raw mail contains personal data, so only the owner may read it. chmod also
    # covers a folder that an older version created with the umask's mode.
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    directory.chmod(0o700)
    digest = hashlib.sha256(incoming.raw).hexdigest()[:16]
    path = directory / f"{now:%Y%m%dT%H%M%S}-{incoming.source}-{digest}.eml"
    temporary = path.with_name(path.name + ".tmp")
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "wb") as handle:
        handle.write(incoming.raw)
    os.replace(temporary, path)
    return path
