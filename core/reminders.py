"""Reminder rules: which tasks are due, who is reminded, and one delivery.

The Delivery table is the source of truth. A delivery moves through
``pending`` (stored, not yet on the queue), ``queued``, ``sending`` (claimed
by a sender, recorded before the email leaves) and ends as ``sent``,
``failed`` or ``skipped``. Every change of status is a conditional UPDATE
that names the status it expects, so two clocks or a restarted sender that
race on one row never both act on it.
"""

from __future__ import annotations

import base64
import html
import logging
import re
import secrets
import time
import weakref
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.headerregistry import HeaderRegistry
from email.message import EmailMessage, MIMEPart
from email.policy import EmailPolicy
from email.utils import format_datetime, make_msgid
from typing import Any, TypeVar
from urllib.parse import quote

import peewee as pw

from core.config import Settings, get_settings
from core.db import database
from core.emails import domain_of, normalize_message_id
from core.models import Delivery, DeliveryAttempt, MailMessage, Task
from core.outbound import DeliveryError, Outgoing, Transport
from core.sqlcache import cached_fetchone, cached_select
from core.timeutil import isoformat, utcnow

logger = logging.getLogger(__name__)

ModelT = TypeVar("ModelT", bound=pw.Model)

KIND_BY_STATUS = {"open": "open_reminder", "fixed": "fixed_reminder"}
STATUS_BY_KIND = {kind: status for status, kind in KIND_BY_STATUS.items()}
REMINDER_KINDS = tuple(KIND_BY_STATUS.values())
ASSIGNED = "assigned"

UNFINISHED = ("pending", "queued", "sending")
NO_RECIPIENT = "The task has no assignee and TRIAGE_EMAIL is not set."
IN_FLIGHT = ("queued", "sending")

# Tasks handled per statement by the tick, and deliveries moved to the queue
# per query. Both bound the work of one statement whatever the table size.
BATCH_SIZE = 1000

# Seconds before the next try after a transient failure, by attempt number;
# the last value repeats.
RETRY_DELAYS = (60, 300, 900)


@dataclass
class TickResult:
    """Counts from one pass of ``enqueue_due_reminders``."""

    # Tasks whose schedule was advanced. Each open or fixed one now owes a
    # reminder, unless it already owed one.
    due: int = 0


def execute_cached(key: str, build: Callable[[], pw.Query], params: list) -> int:
    """Run the statement ``build`` returns, reusing its SQL; return the row count.

    Unlike ``core.sqlcache.cached_execute`` it returns the row count, which
    the claim needs. ``params`` are the values in the order its SQL uses them.
    The first call per database checks them against the values Peewee built,
    so a wrong order fails at once instead of writing to the wrong columns.
    """
    statements = _statement_sql.setdefault(database.obj, {})
    sql = statements.get(key)
    if sql is None:
        sql, expected = build().sql()
        if list(expected) != list(params):
            raise ValueError(f"statement {key!r} takes {expected!r}, not {params!r}")
        statements[key] = sql
    return database.execute_sql(sql, params).rowcount


_statement_sql: weakref.WeakKeyDictionary[pw.Database, dict[str, str]] = (
    weakref.WeakKeyDictionary()
)


def enqueue_due_reminders(
    now: datetime | None = None, *, batch_size: int = BATCH_SIZE
) -> TickResult:
    """Mark every due task as owing a reminder and advance its schedule.

    Due tasks come from one indexed query on ``Task.next_reminder_at``, in
    batches that the database handles without loading rows into Python. One
    UPDATE per batch moves ``next_reminder_at`` one interval ahead and sets
    ``reminder_due_at`` to ``now``. A task that still owes a reminder keeps
    its earlier mark, so however many ticks pass while nothing takes the
    marks, each task owes at most one reminder. ``queue_due_deliveries``
    turns the marks into delivery rows.
    """
    now = now or utcnow()
    sql, params = tick_statement(now, get_settings(), batch_size)
    result = TickResult()
    while True:
        with database.atomic():
            advanced = database.execute_sql(sql, params).rowcount
        result.due += advanced
        # Every task of a batch leaves the due range, so a short batch is
        # the last one.
        if advanced < batch_size:
            break

    logger.info("tick at %s: %d tasks due", isoformat(now), result.due)
    return result


# The tick's SQL, built once per database, intervals and batch size at this
# reference time. Every time value in it is the tick's time plus a fixed
# offset (the time itself, or one interval later), so the values for
# another time are the reference values shifted by the difference.
_TICK_REFERENCE_TIME = datetime(2000, 1, 1)
_tick_sql: weakref.WeakKeyDictionary[pw.Database, dict[tuple, tuple[str, list]]] = (
    weakref.WeakKeyDictionary()
)


def tick_statement(
    now: datetime, settings: Settings, batch_size: int = BATCH_SIZE
) -> tuple[str, list]:
    """Return the SQL and parameters of one batch of the tick at ``now``.

    Building the statement with Peewee costs more than running it, so its
    SQL is cached.
    """
    key = (tuple(settings.intervals.items()), batch_size)
    cached = _tick_sql.setdefault(database.obj, {})
    if key not in cached:
        cached[key] = _build_tick_statement(
            _TICK_REFERENCE_TIME, settings, batch_size
        ).sql()
    sql, params = cached[key]
    shift = now - _TICK_REFERENCE_TIME
    return sql, [
        value + shift if isinstance(value, datetime) else value for value in params
    ]


def _build_tick_statement(
    now: datetime, settings: Settings, batch_size: int
) -> pw.Query:
    batch = (
        Task.select(Task.id)
        .where(Task.next_reminder_at <= now)
        .order_by(Task.next_reminder_at, Task.id)
        .limit(batch_size)
    )
    owes_reminder = Task.status.in_(list(KIND_BY_STATUS))
    due_at = pw.fn.COALESCE(Task.reminder_due_at, Task.reminder_due_at.to_value(now))
    # One write per due task, because the schedule and the mark share the
    # row. On PostgreSQL a second clock's UPDATE waits for the first clock's
    # commit and then checks each row again, so the repeated due condition
    # skips the tasks the first clock already advanced.
    return Task.update(
        next_reminder_at=_next_reminder_at(now, settings),
        reminder_due_at=pw.Case(None, [(owes_reminder, due_at)], None),
    ).where(Task.id.in_(batch) & (Task.next_reminder_at <= now))


def _next_reminder_at(now: datetime, settings: Settings) -> pw.Node:
    """Return the SQL for "one interval of the task's criticality after now".

    Closed tasks get NULL, so they leave the due index for good.
    """
    to_value = Task.next_reminder_at.to_value
    by_criticality = [
        (criticality, to_value(now + interval))
        for criticality, interval in settings.intervals.items()
    ]
    return pw.Case(
        None,
        [(Task.status == "closed", None)],
        pw.Case(Task.criticality, by_criticality),
    )


def resolve_recipient(
    kind: str, assigned_to: str, creator_email: str, settings: Settings
) -> tuple[str, str]:
    """Return ``(recipient, "")``, or ``("", reason)`` without a recipient."""
    if kind == "fixed_reminder":
        return creator_email, ""
    if assigned_to:
        return assigned_to, ""
    if kind == "open_reminder" and settings.triage_email:
        return settings.triage_email.strip().lower(), ""
    return "", NO_RECIPIENT


def queue_due_deliveries(
    now: datetime | None = None, *, limit: int = BATCH_SIZE
) -> list[int]:
    """Mark up to ``limit`` due deliveries as queued; return their ids.

    Reminders the tick marked on their tasks come first: each becomes a
    delivery row stored as queued, or as skipped when it has no recipient.
    Then pending deliveries that are due, such as assignment notices and
    retries, move to queued. An empty list means nothing is left to queue.

    The caller puts each returned id on the queue. If that put fails, the row
    stays queued without a message, and ``in_flight_delivery_ids`` lets a
    later hand-over put it back.
    """
    now = now or utcnow()
    while True:
        handled, queued = _queue_marked_reminders(now, limit)
        # A batch of marks can yield no row to send, because all were skipped
        # or already waiting. Continue until one does or the marks run out.
        if queued or handled < limit:
            break
    if len(queued) < limit:
        queued += _queue_pending_deliveries(now, limit - len(queued))
    return sorted(queued)


# The columns of the rows the hand-over inserts, in the order of its values.
REMINDER_COLUMNS = [
    Delivery.task,
    Delivery.kind,
    Delivery.recipient,
    Delivery.status,
    Delivery.error,
    Delivery.attempts,
    Delivery.provider_message_id,
    Delivery.scheduled_at,
    Delivery.created_at,
    Delivery.updated_at,
]


def _queue_marked_reminders(now: datetime, limit: int) -> tuple[int, list[int]]:
    """Turn up to ``limit`` reminder marks into delivery rows.

    Returns how many marks were taken and the ids of the rows stored as
    queued. A task whose reminder of the same kind is still unfinished gets
    no second row: the unique index ``delivery_one_unfinished_reminder``
    drops it, so while the sender is down the queue contains at most one
    reminder per task. The row's ``scheduled_at`` is when the tick found the
    reminder due, which the sender's interval check measures from.
    """
    with database.atomic():
        marked: pw.Query | list[int] = marked_tasks_query(now, limit)
        if database.obj.for_update:
            # PostgreSQL: lock the marked rows until the commit. A second
            # clock waits and then finds the marks gone, and no tick can mark
            # these tasks again between the INSERT and the UPDATE below, which
            # take the same ids. On SQLite the write lock of this transaction
            # already keeps the set of marks fixed, and the subquery is cheaper
            # than a list of a thousand ids.
            marked = [task_id for (task_id,) in marked.for_update().tuples()]
            if not marked:
                return 0, []

        insert = (
            Delivery.insert_from(
                _reminder_rows(marked, now, get_settings()), REMINDER_COLUMNS
            )
            .on_conflict_ignore()
            .returning(Delivery.id, Delivery.status)
        )
        inserted = database.execute(insert).fetchall()
        marks_taken = (
            Task.update(reminder_due_at=None).where(Task.id.in_(marked)).execute()
        )
    return marks_taken, [
        delivery_id for delivery_id, state in inserted if state == "queued"
    ]


def _reminder_rows(
    marked: pw.Query | list[int], now: datetime, settings: Settings
) -> pw.Query:
    """Select one reminder row for each open or fixed task of ``marked``.

    The database builds the rows, in an INSERT ... SELECT, because passing a
    thousand rows through Python costs many times the statement itself. The
    CASE expressions apply the rules of ``resolve_recipient``; a task closed
    since the tick gets no row.
    """
    triage = settings.triage_email.strip().lower()
    kind = pw.Case(Task.status, list(KIND_BY_STATUS.items()))
    recipient = pw.Case(
        None,
        [
            (Task.status == "fixed", Task.creator_email),
            (Task.assigned_to != "", Task.assigned_to),
        ],
        triage,
    )
    selected = Task.id.in_(marked) & Task.status.in_(list(KIND_BY_STATUS))
    if triage:
        status, error = pw.Value("queued"), pw.Value("")
    else:
        nobody = (Task.status == "open") & (Task.assigned_to == "")
        status = pw.Case(None, [(nobody, "skipped")], "queued")
        error = pw.Case(None, [(nobody, NO_RECIPIENT)], "")
        # One skipped row records why a task gets no reminders, so a new one
        # at every interval would only repeat it.
        selected &= ~(nobody & _last_reminder_had_no_recipient())
    moment = Delivery.created_at.to_value(now)
    return Task.select(
        Task.id,
        kind,
        recipient,
        status,
        error,
        pw.Value(0),
        pw.Value(""),
        Task.reminder_due_at,
        moment,
        moment,
    ).where(selected)


def _last_reminder_had_no_recipient() -> pw.Expression:
    """Match tasks whose latest reminder row was skipped for lack of a recipient."""
    latest = Delivery.alias("latest")
    latest_id = latest.select(pw.fn.MAX(latest.id)).where(
        (latest.task == Task.id) & latest.kind.in_(list(REMINDER_KINDS))
    )
    return pw.fn.EXISTS(
        Delivery.select(pw.Value(1)).where(
            (Delivery.id == latest_id)
            & (Delivery.status == "skipped")
            & (Delivery.error == NO_RECIPIENT)
        )
    )


def marked_tasks_query(now: datetime, limit: int) -> pw.ModelSelect:
    """Select the ids of tasks the tick marked as owing a reminder, oldest first."""
    return (
        Task.select(Task.id)
        .where(Task.reminder_due_at <= now)
        .order_by(Task.reminder_due_at, Task.id)
        .limit(limit)
    )


def _queue_pending_deliveries(now: datetime, limit: int) -> list[int]:
    candidates = [
        delivery_id for (delivery_id,) in pending_due_query(now, limit).tuples()
    ]
    if not candidates:
        return []

    query = (
        Delivery.update(status="queued", updated_at=now)
        .where(Delivery.id.in_(candidates) & (Delivery.status == "pending"))
        .returning(Delivery.id)
    )
    return [row.id for row in query.execute()]


def pending_due_query(now: datetime, limit: int) -> pw.ModelSelect:
    """Select the ids of pending deliveries due at ``now``, oldest first."""
    return (
        Delivery.select(Delivery.id)
        .where((Delivery.status == "pending") & (Delivery.scheduled_at <= now))
        .order_by(Delivery.scheduled_at, Delivery.id)
        .limit(limit)
    )


def in_flight_delivery_ids(changed_before: datetime | None = None) -> list[int]:
    """Return the ids of deliveries that are queued or being sent.

    With ``changed_before``, only those whose status changed before then:
    a delivery another clock marked queued a moment ago may not be on the
    queue yet, and is not lost.
    """
    query = in_flight_query()
    if changed_before is not None:
        query = query.where(Delivery.updated_at < changed_before)
    return [delivery_id for (delivery_id,) in query.tuples()]


def in_flight_query() -> pw.ModelSelect:
    """Select the ids of deliveries that are queued or being sent."""
    # The statuses are literals, not parameters, because SQLite uses the
    # partial index delivery_in_flight only when the query repeats its WHERE.
    statuses = pw.SQL("(" + ", ".join(f"'{status}'" for status in IN_FLIGHT) + ")")
    return (
        Delivery.select(Delivery.id)
        .where(Delivery.status.in_(statuses))
        .order_by(Delivery.id)
    )


def deliver(
    delivery_id: int, transport: Transport, *, now: datetime | None = None
) -> str:
    """Send one delivery unless it is no longer wanted; return its outcome.

    The outcome is "sent", "skipped", "failed", "retry" (a transient failure,
    tried again after a delay), or "ignored" when another process already
    handled the row or the message was a duplicate.
    """
    now = now or utcnow()
    settings = get_settings()
    delivery = _load_delivery(delivery_id)
    if delivery is None:
        logger.info("delivery %s no longer exists; its task was deleted", delivery_id)
        return "ignored"
    if delivery.status not in IN_FLIGHT:
        logger.debug("delivery %s is %s; nothing to send", delivery_id, delivery.status)
        return "ignored"

    task = delivery.task
    if delivery.status == "sending":
        return _resume_interrupted(delivery, task, transport, settings, now)

    reason = skip_reason(task, delivery, settings, now)
    if reason:
        return _skip(delivery, task, reason, now)

    recipient, _ = _current_recipient(task, delivery, settings)
    attempt = _claim(
        delivery,
        now,
        recipient=recipient,
        message_id=_new_message_id(delivery, settings),
    )
    if attempt is None:
        return "ignored"

    return _send(delivery, task, attempt, transport, settings, now)


# The columns the sender reads. Leaving out the others, the task's HTML
# above all, keeps the reload cheap; nothing here saves these rows whole.
SENDER_DELIVERY_COLUMNS = (
    Delivery.id,
    Delivery.task,
    Delivery.kind,
    Delivery.recipient,
    Delivery.status,
    Delivery.scheduled_at,
    Delivery.attempts,
    Delivery.message_id,
)
SENDER_TASK_COLUMNS = (
    Task.id,
    Task.creator_email,
    Task.assigned_to,
    Task.subject,
    Task.thread_id,
    Task.latest_message_id,
    Task.status,
    Task.criticality,
    Task.last_reminder_at,
)


def _load_delivery(delivery_id: int) -> Delivery | None:
    """Reload a delivery with its task, or return None if either is gone."""
    # One query for both rows, read as a plain tuple: building model objects
    # through Peewee's row wrappers cost more than the query on SQLite.
    row = cached_fetchone(
        "reminders-load",
        lambda: (
            Delivery.select(*SENDER_DELIVERY_COLUMNS, *SENDER_TASK_COLUMNS)
            .join(Task)
            .where(Delivery.id == 0)
        ),
        [delivery_id],
    )
    if row is None:
        return None

    split = len(SENDER_DELIVERY_COLUMNS)
    delivery = _from_row(Delivery, SENDER_DELIVERY_COLUMNS, row[:split])
    delivery.task = _from_row(Task, SENDER_TASK_COLUMNS, row[split:])
    return delivery


def _from_row(
    model: type[ModelT], columns: tuple[pw.Field, ...], values: tuple
) -> ModelT:
    return model(
        **{
            field.name: field.python_value(value)
            for field, value in zip(columns, values, strict=True)
        }
    )


def _first(rows: Iterable[ModelT]) -> ModelT | None:
    return next(iter(rows), None)


def skip_reason(
    task: Task, delivery: Delivery, settings: Settings, now: datetime
) -> str:
    """Return why this delivery must not be sent now, or "" to send it."""
    if task.status == "closed":
        return "The task is closed."
    if delivery.kind == ASSIGNED:
        if task.assigned_to != delivery.recipient:
            return "The task was assigned to someone else before this notice went out."
        return _outside_allowed_domains(delivery.recipient, settings)

    expected = STATUS_BY_KIND.get(delivery.kind)
    if task.status != expected:
        return f"The task is {task.status} now, not {expected}."

    interval = settings.intervals[task.criticality]
    if task.last_reminder_at is not None:
        # Measured to when this reminder fell due, not to the send, so a
        # reminder that waited in the queue is not held against the next.
        since = delivery.scheduled_at - task.last_reminder_at
        if since < interval - _send_delay_allowance(settings):
            return (
                f"The last reminder went out at {isoformat(task.last_reminder_at)}, "
                f"less than the interval of {interval} before this one was due."
            )

    recipient, reason = _current_recipient(task, delivery, settings)
    return reason or _outside_allowed_domains(recipient, settings)


def _outside_allowed_domains(recipient: str, settings: Settings) -> str:
    # Tasks stored before ALLOWED_EMAIL_DOMAINS was set, or narrowed, can
    # name outsiders; the check at send time keeps mail from reaching them.
    allowed = settings.allowed_email_domains
    if allowed and domain_of(recipient) not in allowed:
        return (
            f"The recipient {recipient} is outside ALLOWED_EMAIL_DOMAINS "
            f"({', '.join(allowed)})."
        )
    return ""


def _send_delay_allowance(settings: Settings) -> timedelta:
    # Reminders fall due on tick boundaries but leave when the sender gets to
    # them, so two on-time reminders can be a little less than one interval
    # apart. Half a tick of slack keeps the second from being skipped.
    return timedelta(minutes=settings.reminder_tick_minutes) / 2


def _current_recipient(
    task: Task, delivery: Delivery, settings: Settings
) -> tuple[str, str]:
    if delivery.kind == ASSIGNED:
        return delivery.recipient, ""
    return resolve_recipient(
        delivery.kind, task.assigned_to, task.creator_email, settings
    )


def _new_message_id(delivery: Delivery, settings: Settings) -> str:
    if delivery.message_id:
        return delivery.message_id
    return make_msgid(
        idstring=f"threadtask.{delivery.id}", domain=domain_of(settings.mailbox_address)
    )


def _claim(
    delivery: Delivery, now: datetime, *, recipient: str, message_id: str
) -> DeliveryAttempt | None:
    """Move the row to "sending" and open an attempt; None if someone else did."""
    number = delivery.attempts + 1
    attempt = DeliveryAttempt(delivery=delivery.id, number=number, started_at=now)
    with database.atomic():
        changed = execute_cached(
            "reminders-claim",
            lambda: Delivery.update(
                status="sending",
                attempts=number,
                recipient=recipient,
                message_id=message_id,
                updated_at=now,
            ).where(
                (Delivery.id == delivery.id)
                & (Delivery.status == delivery.status)
                & (Delivery.attempts == delivery.attempts)
            ),
            [
                recipient,
                "sending",
                number,
                message_id,
                now,
                delivery.id,
                delivery.status,
                delivery.attempts,
            ],
        )
        if changed != 1:
            logger.info("delivery %s was claimed by another sender", delivery.id)
            return None
        execute_cached(
            "reminders-attempt-insert",
            lambda: DeliveryAttempt.insert(
                delivery=delivery.id, number=number, started_at=now
            ),
            [delivery.id, number, now, "", ""],
        )

    delivery.status = "sending"
    delivery.attempts = number
    delivery.recipient = recipient
    delivery.message_id = message_id
    return attempt


def _send(
    delivery: Delivery,
    task: Task,
    attempt: DeliveryAttempt,
    transport: Transport,
    settings: Settings,
    now: datetime,
) -> str:
    outgoing = Outgoing(
        delivery_id=delivery.id,
        message=render_email(task, delivery, settings, now),
        thread_id=task.thread_id,
    )
    started = time.monotonic()
    try:
        provider_id = transport.send(outgoing)
    except DeliveryError as exc:
        return _record_failure(delivery, task, attempt, exc, settings, now, started)

    _record_sent(delivery, task, attempt, provider_id, now, started)
    return "sent"


def _resume_interrupted(
    delivery: Delivery,
    task: Task,
    transport: Transport,
    settings: Settings,
    now: datetime,
) -> str:
    """Finish a delivery whose sender died after claiming it.

    The email may or may not have left. If the transport finds it, only the
    record is written. Otherwise it is sent again with the same Message-ID;
    when the transport cannot confirm sends exactly (Gmail), a second
    interruption stops the delivery as failed so a recipient gets at most
    one duplicate.
    """
    outgoing = Outgoing(
        delivery_id=delivery.id,
        message=render_email(task, delivery, settings, now),
        thread_id=task.thread_id,
    )
    interrupted = _mark_interrupted(delivery, now)
    provider_id = transport.find_sent(outgoing)
    attempt = _claim(
        delivery, now, recipient=delivery.recipient, message_id=delivery.message_id
    )
    if attempt is None:
        return "ignored"

    if provider_id:
        logger.warning(
            "delivery %s for task %s was sent before its sender stopped; recording it",
            delivery.id,
            task.id,
        )
        _record_sent(delivery, task, attempt, provider_id, now, time.monotonic())
        return "sent"

    reason = skip_reason(task, delivery, settings, now)
    if reason:
        _finish_attempt(attempt, "skipped", reason, now, time.monotonic())
        return _skip(delivery, task, reason, now)

    if interrupted >= 2 and not transport.confirms_sends:
        error = (
            f"{interrupted} attempts stopped before their outcome was recorded and "
            "the transport cannot confirm whether the email left; it is not sent "
            "again, so the recipient gets at most one duplicate."
        )
        return _record_failure(
            delivery,
            task,
            attempt,
            DeliveryError(error, permanent=True),
            settings,
            now,
            time.monotonic(),
        )

    logger.warning(
        "delivery %s for task %s stopped before its outcome was recorded; resending",
        delivery.id,
        task.id,
    )
    return _send(delivery, task, attempt, transport, settings, now)


def _mark_interrupted(delivery: Delivery, now: datetime) -> int:
    """Close unfinished attempts as interrupted; return how many ever were."""
    (
        DeliveryAttempt.update(outcome="interrupted", finished_at=now)
        .where(
            (DeliveryAttempt.delivery == delivery.id) & (DeliveryAttempt.outcome == "")
        )
        .execute()
    )
    return (
        DeliveryAttempt.select()
        .where(
            (DeliveryAttempt.delivery == delivery.id)
            & (DeliveryAttempt.outcome == "interrupted")
        )
        .count()
    )


def _skip(delivery: Delivery, task: Task, reason: str, now: datetime) -> str:
    changed = (
        Delivery.update(status="skipped", error=reason, updated_at=now)
        .where((Delivery.id == delivery.id) & (Delivery.status == delivery.status))
        .execute()
    )
    if changed != 1:
        return "ignored"
    logger.info("delivery %s for task %s skipped: %s", delivery.id, task.id, reason)
    return "skipped"


def _record_sent(
    delivery: Delivery,
    task: Task,
    attempt: DeliveryAttempt,
    provider_id: str,
    now: datetime,
    started: float,
) -> None:
    with database.atomic():
        execute_cached(
            "reminders-sent",
            lambda: Delivery.update(
                status="sent",
                sent_at=now,
                provider_message_id=provider_id,
                error="",
                updated_at=now,
            ).where((Delivery.id == delivery.id) & (Delivery.status == "sending")),
            ["sent", now, "", provider_id, now, delivery.id, "sending"],
        )
        duration_ms = _finish_attempt(attempt, "sent", "", now, started)
        if delivery.kind in REMINDER_KINDS:
            execute_cached(
                "reminders-last-reminder",
                lambda: Task.update(last_reminder_at=now).where(Task.id == task.id),
                [now, task.id],
            )
        _record_outbound_message(delivery, task)
    logger.info(
        "delivery %s (%s) for task %s sent as %s in %d ms",
        delivery.id,
        delivery.kind,
        task.id,
        provider_id,
        duration_ms,
    )


def _record_outbound_message(delivery: Delivery, task: Task) -> None:
    # A conflict on the unique Message-ID means the mail reader saw this
    # email in the mailbox and recorded it before the sender got here.
    # Every column is given, in the order of the INSERT's SQL.
    values = {
        "message_id": delivery.message_id,
        "task": task.id,
        "direction": "out",
        "source_id": "",
        "thread_id": task.thread_id,
        "outcome": "sent",
        "reason": "",
        "sender": get_settings().mailbox_address,
        "subject": task.subject,
        "attachments": "[]",
        "created_at": utcnow(),
    }
    execute_cached(
        "reminders-outbound-message",
        lambda: MailMessage.insert(**values).on_conflict_ignore(),
        list(values.values()),
    )


def _record_failure(
    delivery: Delivery,
    task: Task,
    attempt: DeliveryAttempt,
    exc: DeliveryError,
    settings: Settings,
    now: datetime,
    started: float,
) -> str:
    final = exc.permanent or delivery.attempts >= settings.send_max_attempts
    with database.atomic():
        if final:
            values = {"status": "failed"}
        else:
            delay = RETRY_DELAYS[min(delivery.attempts, len(RETRY_DELAYS)) - 1]
            values = {
                "status": "pending",
                "scheduled_at": now + timedelta(seconds=delay),
            }
        (
            Delivery.update(error=exc.message, updated_at=now, **values)
            .where((Delivery.id == delivery.id) & (Delivery.status == "sending"))
            .execute()
        )
        _finish_attempt(
            attempt, "failed" if final else "retry", exc.message, now, started
        )

    if final:
        logger.error(
            "delivery %s for task %s failed after %d attempts: %s",
            delivery.id,
            task.id,
            delivery.attempts,
            exc.message,
        )
        return "failed"
    logger.warning(
        "delivery %s for task %s failed (attempt %d of %d), trying again at %s: %s",
        delivery.id,
        task.id,
        delivery.attempts,
        settings.send_max_attempts,
        isoformat(values["scheduled_at"]),
        exc.message,
    )
    return "retry"


def _finish_attempt(
    attempt: DeliveryAttempt, outcome: str, error: str, now: datetime, started: float
) -> int:
    duration_ms = int((time.monotonic() - started) * 1000)
    # The claim's conditional UPDATE gives each attempt number of a delivery
    # to one sender, so the pair names one attempt.
    execute_cached(
        "reminders-attempt-finish",
        lambda: DeliveryAttempt.update(
            outcome=outcome, error=error, finished_at=now, duration_ms=duration_ms
        ).where(
            (DeliveryAttempt.delivery == attempt.delivery_id)
            & (DeliveryAttempt.number == attempt.number)
        ),
        [now, outcome, error, duration_ms, attempt.delivery_id, attempt.number],
    )
    return duration_ms


# Marks every email the product sends, with the delivery id as value, so the
# mail reader can tell our own replies from people's.
DELIVERY_HEADER = "X-Threadtask-Delivery"


class _HeaderClasses(HeaderRegistry):
    """The email package's header classes, each created once per name.

    ``HeaderRegistry.__getitem__`` creates a new class on every call (CPython
    3.11 ``email/headerregistry.py``), which took nearly half the time of
    rendering a reminder.
    """

    def __init__(self) -> None:
        super().__init__()
        self._classes: dict[str, type] = {}

    def __getitem__(self, name: str) -> type:
        key = name.lower()
        header_class = self._classes.get(key)
        if header_class is None:
            header_class = self._classes[key] = super().__getitem__(name)
        return header_class


class _ReminderEmailPolicy(EmailPolicy):
    """The SMTP policy, keeping short printable ASCII header values as text.

    EmailPolicy writes such a value out as it is, the way it writes headers
    read from a file, instead of parsing it into a header object when it is
    set and folding that object again when the email is written. Other
    values, line breaks included, take EmailPolicy's own path.
    """

    def header_store_parse(self, name: str, value: Any) -> tuple[str, Any]:
        plain = (
            type(value) is str
            # The generator reads the Content-* headers back, and a header
            # object parses once where text would be parsed at every read.
            and not name.lower().startswith("content-")
            and value.isascii()
            and value.isprintable()
            and len(name) + 2 + len(value) <= self.max_line_length
        )
        if plain:
            return (name, value)
        return super().header_store_parse(name, value)

    def fold_binary(self, name: str, value: Any) -> bytes:
        constant = _FOLDED_CONSTANTS.get(id(value))
        if constant is not None and constant[0] is value:
            return constant[1]
        return super().fold_binary(name, value)


# CRLF line ends as SMTP wants. Lines are folded only past RFC 5322's hard
# limit of 998 characters, because folding a long Message-ID onto its own
# continuation line leaves a leading space that some clients keep when they
# match In-Reply-To against the original.
EMAIL_POLICY = _ReminderEmailPolicy(
    linesep="\r\n", max_line_length=998, header_factory=_HeaderClasses()
)

INTRODUCTIONS = {
    "assigned": "You have been assigned this task, please check.",
    "open_reminder": "This task is still open and assigned to you. Please deal "
    "with it, or mark it fixed when it is done.",
    "triage": "This task is open and nobody is assigned to it. Please assign it "
    "to someone.",
    "fixed_reminder": "This task was marked fixed. Please verify the fix and "
    "close the task, or reopen it if the problem remains.",
}


def render_email(
    task: Task, delivery: Delivery, settings: Settings, now: datetime
) -> EmailMessage:
    """Build the email for a delivery as a reply in the task's thread.

    Every header value built from stored text goes through ``_header_text``,
    which folds line breaks into spaces, so no value can add a header.
    """
    # The preview page shows a person the task's card with its buttons,
    # whereas /tasks/<id> returns 401 JSON to a browser.
    link = (
        f"{settings.public_base_url.rstrip('/')}/addon/preview"
        f"?thread_id={quote(task.thread_id, safe='')}"
    )
    intro_key = delivery.kind
    if delivery.kind == "open_reminder" and not task.assigned_to:
        intro_key = "triage"
    facts = [
        ("Task", _header_text(task.subject) or f"Task {task.id}"),
        ("Status", task.status),
        ("Criticality", task.criticality),
        ("Assignee", task.assigned_to or "nobody"),
        ("Link", link),
    ]

    message = EmailMessage(policy=EMAIL_POLICY)
    message["From"] = _header_text(settings.mailbox_address)
    message["To"] = _header_text(delivery.recipient)
    message["Subject"] = reply_subject(task)
    message["Date"] = format_datetime(now.replace(tzinfo=UTC))
    message["Message-ID"] = normalize_message_id(delivery.message_id)
    references = _references(task)
    if references:
        message["In-Reply-To"] = references[-1]
        message["References"] = " ".join(references)
    message["Auto-Submitted"] = "auto-generated"
    message["X-Auto-Response-Suppress"] = "All"
    message[DELIVERY_HEADER] = str(delivery.id)

    text_lines = [INTRODUCTIONS[intro_key], ""]
    text_lines += [f"{label}: {value}" for label, value in facts]
    plain = _text_part("\n".join(text_lines) + "\n", "plain")
    html_part = _text_part(_html_body(INTRODUCTIONS[intro_key], facts, link), "html")
    # Random 128 bits cannot occur in the parts by chance, and the author of
    # the subject cannot know them, so the generator need not search the
    # parts for a boundary of its own.
    boundary = f"threadtask-{secrets.token_hex(16)}"
    message["MIME-Version"] = "1.0"
    message["Content-Type"] = f'multipart/alternative; boundary="{boundary}"'
    message.attach(plain)
    message.attach(html_part)
    return message


def _text_part(text: str, subtype: str) -> MIMEPart:
    """Build a UTF-8 text part: 7bit or 8bit as ``set_content`` picks, or base64.

    ``set_content`` costs several times as much, because it builds and
    rereads the part's headers. Lines too long for SMTP get base64, where it
    might have picked quoted-printable; either decodes to the same text.
    """
    part = MIMEPart(policy=EMAIL_POLICY)
    part["Content-Type"] = _parsed_header(
        "Content-Type", f'text/{subtype}; charset="utf-8"'
    )
    body = text.encode()
    # RFC 5321 limits a line to 998 octets before its CRLF.
    if max(len(line) for line in body.splitlines()) <= 998:
        # The email package keeps 8bit text as ASCII with the other bytes
        # escaped as surrogates, and writes those bytes back unchanged.
        encoding = "7bit" if body.isascii() else "8bit"
        payload = body.decode("ascii", "surrogateescape")
    else:
        encoding = "base64"
        payload = base64.encodebytes(body).decode("ascii")
    part["Content-Transfer-Encoding"] = _parsed_header(
        "Content-Transfer-Encoding", encoding
    )
    part.set_payload(payload)
    return part


def _parsed_header(name: str, value: str) -> Any:
    """Return the header object for a value every email repeats.

    It is parsed and folded once. Header objects are immutable strings, so
    one object can sit in many emails. Storing it skips the parse that
    setting the text would run, and the policy writes out the folded form
    kept here.
    """
    header = _CONSTANT_HEADERS.get((name, value))
    if header is None:
        header = EMAIL_POLICY.header_store_parse(name, value)[1]
        _CONSTANT_HEADERS[(name, value)] = header
        _FOLDED_CONSTANTS[id(header)] = (header, EMAIL_POLICY.fold_binary(name, header))
    return header


# Filled by _parsed_header with the few values of the text parts' Content-*
# headers. The folded form is found by the header object's identity; keeping
# the object here keeps its id from being reused.
_CONSTANT_HEADERS: dict[tuple[str, str], Any] = {}
_FOLDED_CONSTANTS: dict[int, tuple[Any, bytes]] = {}


def reply_subject(task: Task) -> str:
    """Return ``Re: <subject>``, keeping a subject that already starts with Re:."""
    # An empty subject stays empty, as mail clients reply to one, because
    # Gmail threads a reply only when its subject matches the original's.
    subject = _header_text(task.subject)
    if re.match(r"^re\s*:", subject, re.IGNORECASE):
        return subject
    return f"Re: {subject}".strip()


def _references(task: Task) -> list[str]:
    """Return the thread's first known Message-ID and its latest, in order."""
    latest = normalize_message_id(task.latest_message_id)
    if not latest:
        return []
    first = _first(
        cached_select(
            MailMessage,
            "reminders-thread-root",
            lambda: (
                MailMessage.select(MailMessage.message_id)
                .where((MailMessage.task == 0) & (MailMessage.direction == "in"))
                .order_by(MailMessage.id)
                .limit(1)
            ),
            [task.id, "in", 1],
        )
    )
    root = normalize_message_id(first.message_id) if first else ""
    return [root, latest] if root and root != latest else [latest]


def _header_text(value: str) -> str:
    return " ".join(str(value or "").split())


def _html_body(intro: str, facts: list[tuple[str, str]], link: str) -> str:
    rows = "\n".join(
        f'<tr><th align="left">{html.escape(label)}</th>'
        f"<td>{html.escape(value)}</td></tr>"
        for label, value in facts
        if label != "Link"
    )
    return (
        "<!DOCTYPE html>\n<html><body>\n"
        f"<p>{html.escape(intro)}</p>\n"
        f"<table>\n{rows}\n</table>\n"
        f'<p><a href="{html.escape(link, quote=True)}">Open the task</a></p>\n'
        "</body></html>\n"
    )
