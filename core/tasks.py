"""The task rules. Every channel (API, mail, Slack, add-on, clock) calls these.

Each public function runs in one transaction: it either applies every change
and records every event, or leaves the database as it was.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import peewee as pw
from blinker import Namespace

from core.config import CRITICALITIES, STATUSES, get_settings
from core.db import database
from core.emails import domain_of, normalize_field
from core.errors import Conflict, Forbidden, InvalidField, NotFound, PreconditionFailed
from core.models import CHANNELS, Delivery, Event, Task, TaskBody
from core.sqlcache import cached_select
from core.timeutil import utcnow

logger = logging.getLogger(__name__)

signals = Namespace()
# Sent after a transaction that changed a task commits, with ``task``,
# ``actor`` and ``changes`` (field -> (old, new)). Channels such as Slack
# subscribe to it; the core never imports them. A caller that runs the task
# rules inside a transaction of its own wraps it in signals_after_commit().
task_changed = signals.signal("task-changed")
_held_signals = threading.local()


@contextmanager
def signals_after_commit() -> Iterator[None]:
    """Hold ``task_changed`` until the block ends; drop it if the block raises.

    Put this outside the caller's ``database.atomic()`` block, so that the
    signals go out after its commit and never for a change rolled back.
    """
    if getattr(_held_signals, "pending", None) is not None:
        # Nested: the outermost block sends.
        yield
        return

    pending: list[tuple[Task, Actor, dict]] = []
    _held_signals.pending = pending
    try:
        yield
    finally:
        _held_signals.pending = None
    for task, actor, changes in pending:
        task_changed.send(task, actor=actor, changes=changes)


def _announce(task: Task, actor: Actor, changes: dict) -> None:
    pending = getattr(_held_signals, "pending", None)
    if pending is None:
        task_changed.send(task, actor=actor, changes=changes)
    else:
        pending.append((task, actor, changes))


TEXT_FIELDS = ("subject", "html", "thread_id", "latest_message_id")
ADDRESS_FIELDS = ("creator_email", "assigned_to")
UPDATABLE_FIELDS = (*TEXT_FIELDS, "assigned_to", "status", "criticality")
READ_ONLY_FIELDS = (
    "id",
    "version",
    "created_at",
    "modified_at",
    "last_reminder_at",
    "next_reminder_at",
    "events",
    "reminders",
)
# Delivery statuses of a notice that has not gone out yet.
UNSENT_STATUSES = ("pending", "queued")
MAX_SUBJECT_LENGTH = 998
MAX_ID_LENGTH = 255


@dataclass(frozen=True)
class Actor:
    """The person or service acting on a task, and the channel it came through."""

    email: str
    channel: str
    is_service: bool = False

    def __post_init__(self) -> None:
        if self.channel not in CHANNELS:
            raise ValueError(f"channel {self.channel!r} is not one of {CHANNELS}")

    @property
    def is_admin(self) -> bool:
        return self.email.lower() in get_settings().admin_emails


def compute_next_reminder_at(
    status: str, criticality: str, since: datetime
) -> datetime | None:
    """Return when the next reminder for a task in this state is due.

    ``since`` is the last reminder, or the moment the task entered its
    current status. Closed tasks get no reminders.
    """
    if status == "closed":
        return None
    return since + get_settings().intervals[criticality]


MAX_TASK_ID = 2**63 - 1


def get_task(task_id: int, *, for_update: bool = False) -> Task:
    """Return the task or raise NotFound.

    ``for_update`` locks the row until the transaction ends on PostgreSQL, so
    concurrent updates queue up instead of failing their version check.
    SQLite needs no row lock because its write transactions begin IMMEDIATE.
    """
    if not 0 < task_id <= MAX_TASK_ID:
        raise NotFound(f"Task {task_id} does not exist.")
    if for_update and database.obj.for_update:
        rows = cached_select(
            Task,
            "task-by-id-for-update",
            lambda: Task.select().where(Task.id == 0).for_update(),
            [task_id],
        )
    else:
        # The body comes in the same query; its column "html" sets task.html.
        rows = cached_select(
            Task,
            "task-by-id",
            lambda: (
                Task.select(Task, TaskBody.html.alias("html"))
                .join(TaskBody, pw.JOIN.LEFT_OUTER)
                .where(Task.id == 0)
            ),
            [task_id],
        )
    task = next(iter(rows), None)
    if task is None:
        raise NotFound(f"Task {task_id} does not exist.")
    return task


def create_task(
    actor: Actor, fields: dict[str, Any], now: datetime | None = None
) -> Task:
    """Create a task from ``fields``; the actor is the creator unless allowed."""
    now = now or utcnow()
    values = _clean(fields, creating=True)
    creator = values.get("creator_email") or actor.email
    if creator != actor.email and not (actor.is_service or actor.is_admin):
        raise Forbidden(
            f"You are {actor.email}; only an admin or a service token may create "
            f"a task on behalf of {creator}. Leave creator_email out to be the creator."
        )
    values["creator_email"] = normalize_field("creator_email", creator, required=True)
    _check_domains(values)
    values.setdefault("criticality", "medium")
    values.setdefault("status", "open")
    if values["status"] != "open":
        raise InvalidField("status", values["status"], "a new task is always open")
    if not values.get("thread_id"):
        raise InvalidField("thread_id", values.get("thread_id"), "is required")

    with database.atomic():
        existing = Task.for_thread(values["thread_id"])
        if existing is not None:
            raise _thread_conflict(values["thread_id"], existing.id)
        html = values.pop("html", "")
        task = Task(created_at=now, modified_at=now, **values)
        task.html = html
        task.next_reminder_at = compute_next_reminder_at(
            task.status, task.criticality, now
        )
        try:
            with database.atomic():
                task.save(force_insert=True)
        except pw.IntegrityError:
            # The unique index on thread_id: another request created the task
            # for this thread between our check and our insert.
            other = Task.for_thread(values["thread_id"])
            raise _thread_conflict(
                values["thread_id"], other.id if other else None
            ) from None
        _store_body(task)
        _record(task, actor, "created", None, task.subject, now)
        if task.assigned_to:
            _queue_assignment_notice(task, now)
    logger.info("task %s created by %s via %s", task.id, actor.email, actor.channel)
    _announce(task, actor, {"created": (None, task.id)})
    return task


def update_task(
    actor: Actor,
    task_id: int,
    fields: dict[str, Any],
    *,
    expected_version: int | None = None,
    now: datetime | None = None,
) -> Task:
    """Apply the given fields to a task and record one event per change.

    Fields whose value is unchanged are ignored, so setting a status the task
    already has changes and records nothing.
    """
    now = now or utcnow()
    values = _clean(fields, creating=False)
    _check_domains(values)

    with database.atomic():
        task = get_task(task_id, for_update=True)
        _check_version(task, expected_version)
        changes = {
            name: (getattr(task, name), value)
            for name, value in values.items()
            if getattr(task, name) != value
        }
        if not changes:
            return task
        _authorize_changes(actor, task, changes)
        _apply(task, changes, now)
        try:
            with database.atomic():
                updated = (
                    Task.update(
                        **{
                            name: getattr(task, name)
                            for name in _dirty(changes)
                            if name != "html"
                        },
                        version=Task.version + 1,
                        modified_at=now,
                    )
                    .where((Task.id == task.id) & (Task.version == task.version))
                    .execute()
                )
        except pw.IntegrityError:
            # thread_id is the only unique column an update can change.
            other = Task.for_thread(task.thread_id)
            raise _thread_conflict(
                task.thread_id, other.id if other else None
            ) from None
        if updated != 1:
            raise PreconditionFailed(
                f"Task {task_id} was changed by someone else at the same time. "
                "Fetch it again and retry."
            )
        if "html" in changes:
            _store_body(task)
        task.version += 1
        task.modified_at = now
        for name, (old, new) in changes.items():
            _record(task, actor, name, old, new, now)
        if "status" in changes:
            _cancel_unsent_reminders(
                task,
                now,
                f"The task became {task.status} before this reminder went out; "
                "the new status starts a fresh interval.",
            )
        if "assigned_to" in changes:
            _cancel_assignment_notices(task, now)
            _cancel_unsent_reminders(
                task,
                now,
                "The task was reassigned before this reminder went out; the "
                "new assignee gets the assignment notice instead.",
                kinds=("open_reminder",),
            )
            if task.assigned_to:
                _queue_assignment_notice(task, now)
    logger.info(
        "task %s changed by %s via %s: %s",
        task.id,
        actor.email,
        actor.channel,
        ", ".join(changes),
    )
    _announce(task, actor, changes)
    return task


def delete_task(
    actor: Actor, task_id: int, *, expected_version: int | None = None
) -> None:
    """Delete a task with its history; only admins may."""
    if not actor.is_admin:
        raise Forbidden(
            f"Only an admin can delete a task, and {actor.email} is not one. "
            "Admins are listed in ADMIN_EMAILS."
        )
    with database.atomic():
        task = get_task(task_id, for_update=True)
        _check_version(task, expected_version)
        task.delete_instance()
    logger.info("task %s deleted by %s via %s", task_id, actor.email, actor.channel)


def _check_version(task: Task, expected_version: int | None) -> None:
    if expected_version is not None and task.version != expected_version:
        raise PreconditionFailed(
            f"Task {task.id} changed since you read it (your ETag is version "
            f"{expected_version}, the task is at version {task.version}). "
            "Fetch it again and retry."
        )


def _clean(fields: dict[str, Any], *, creating: bool) -> dict[str, Any]:
    """Validate and normalise incoming field values.

    Raises one InvalidField that lists every invalid field of the request.
    """
    allowed = (*UPDATABLE_FIELDS, "creator_email") if creating else UPDATABLE_FIELDS
    values: dict[str, Any] = {}
    errors: list[InvalidField] = []
    for name, value in fields.items():
        try:
            values[name] = _clean_one(name, value, allowed, creating)
        except InvalidField as exc:
            errors.append(exc)
    if errors:
        first, *others = errors
        raise InvalidField(first.field, first.value, first.message, others)
    return values


def _clean_one(name: str, value: Any, allowed: tuple[str, ...], creating: bool) -> Any:
    if name not in allowed:
        raise InvalidField(name, value, unsettable_reason(name, creating, allowed))
    if name in ADDRESS_FIELDS:
        return normalize_field(name, value)
    if name == "status":
        return _choice(name, value, STATUSES)
    if name == "criticality":
        return _choice(name, value, CRITICALITIES)
    return _text(name, value)


def unsettable_reason(name: str, creating: bool, allowed: tuple[str, ...]) -> str:
    if name == "status" and creating:
        return "a new task is always open; change its status with an update"
    if name == "creator_email":
        return "the creator of a task cannot change"
    if name in READ_ONLY_FIELDS:
        return "is read-only"
    return f"is not a field of a task; use {', '.join(allowed)}"


def _choice(name: str, value: Any, choices: tuple[str, ...]) -> str:
    if not isinstance(value, str) or value.strip().lower() not in choices:
        raise InvalidField(name, value, f"must be one of {', '.join(choices)}")
    return value.strip().lower()


def _text(name: str, value: Any) -> str:
    if value is None:
        value = ""
    if not isinstance(value, str):
        raise InvalidField(name, value, "must be a string")
    if "\0" in value:
        raise InvalidField(name, value, "cannot contain NUL characters")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise InvalidField(
            name, value, "is not valid Unicode (it contains a lone surrogate)"
        ) from None
    if name == "html":
        return value
    # Subjects and ids end up in email headers: line breaks would let a value
    # add headers of its own, so they are folded into spaces here.
    value = " ".join(value.split()) if name == "subject" else value.strip()
    limit = MAX_SUBJECT_LENGTH if name == "subject" else MAX_ID_LENGTH
    if name == "latest_message_id":
        limit = 998
    if any(char in value for char in "\r\n"):
        raise InvalidField(name, value, "cannot contain line breaks")
    if len(value) > limit:
        raise InvalidField(name, value, f"is longer than {limit} characters")
    if name == "thread_id" and not value:
        raise InvalidField(name, value, "cannot be empty")
    return value


def _check_domains(values: dict[str, Any]) -> None:
    allowed = get_settings().allowed_email_domains
    if not allowed:
        return
    for name in ADDRESS_FIELDS:
        address = values.get(name)
        if address and domain_of(address) not in allowed:
            raise InvalidField(
                name,
                address,
                f"its domain is not in ALLOWED_EMAIL_DOMAINS ({', '.join(allowed)})",
            )


def _authorize_changes(actor: Actor, task: Task, changes: dict[str, tuple]) -> None:
    new_status = changes.get("status", (None, None))[1]
    if new_status == "closed" and actor.email != task.creator_email:
        raise Forbidden(
            f"Only {task.creator_email}, who created this task, can close it."
        )


def _store_body(task: Task) -> None:
    """Write the task's HTML body to its own table; an empty body has no row."""
    if not task.html:
        TaskBody.delete().where(TaskBody.task == task.id).execute()
        return
    (
        TaskBody.insert(task=task.id, html=task.html)
        .on_conflict(conflict_target=[TaskBody.task], preserve=[TaskBody.html])
        .execute()
    )


def _apply(task: Task, changes: dict[str, tuple], now: datetime) -> None:
    for name, (_, new) in changes.items():
        setattr(task, name, new)
    if "status" in changes or "criticality" in changes:
        # A new status starts a fresh reminder period. A new criticality keeps
        # the period's start, so raising it from low to critical makes the
        # reminder due at the next tick instead of next week.
        if "status" in changes:
            since = now
        else:
            since = _period_start(task, changes["criticality"][0], now)
        task.next_reminder_at = compute_next_reminder_at(
            task.status, task.criticality, since
        )
    if "status" in changes:
        # A reminder the tick found due was about the old status.
        task.reminder_due_at = None


def _period_start(task: Task, old_criticality: str, now: datetime) -> datetime:
    """Return when the task's current reminder period began.

    The next reminder is one interval of the old criticality after that
    start, whether the period began with the last reminder, the last change
    of status or the task's creation.
    """
    interval = get_settings().intervals.get(old_criticality)
    if task.next_reminder_at is not None and interval is not None:
        return task.next_reminder_at - interval
    return task.last_reminder_at or task.created_at or now


def _dirty(changes: dict[str, tuple]) -> list[str]:
    names = list(changes)
    if "status" in changes or "criticality" in changes:
        names.append("next_reminder_at")
    if "status" in changes:
        names.append("reminder_due_at")
    return names


def _record(
    task: Task, actor: Actor, field: str, old: Any, new: Any, now: datetime
) -> None:
    if field == "html":
        # Bodies can be megabytes; the history keeps their sizes, not copies.
        old = None if old is None else f"{len(old)} characters"
        new = None if new is None else f"{len(new)} characters"
    Event.create(
        task=task,
        actor=actor.email,
        channel=actor.channel,
        field=field,
        old_value=None if old is None else str(old),
        new_value=None if new is None else str(new),
        created_at=now,
    )


def _queue_assignment_notice(task: Task, now: datetime) -> None:
    """Store the "you have been assigned" email; the reminder sender delivers it."""
    Delivery.create(
        task=task,
        kind="assigned",
        recipient=task.assigned_to,
        status="pending",
        scheduled_at=now,
        created_at=now,
        updated_at=now,
    )


def _cancel_assignment_notices(task: Task, now: datetime) -> None:
    """Skip unsent assignment notices to people no longer assigned."""
    (
        Delivery.update(
            status="skipped",
            error="The task was reassigned before this notice was sent.",
            updated_at=now,
        )
        .where(
            (Delivery.task == task.id)
            & (Delivery.kind == "assigned")
            & (Delivery.status.in_(UNSENT_STATUSES))
            & (Delivery.recipient != task.assigned_to)
        )
        .execute()
    )


def _cancel_unsent_reminders(
    task: Task,
    now: datetime,
    reason: str,
    kinds: tuple[str, ...] = ("open_reminder", "fixed_reminder"),
) -> None:
    """Skip the task's reminders that are stored or queued but not yet sent.

    One being sent right now is left to finish.
    """
    (
        Delivery.update(status="skipped", error=reason, updated_at=now)
        .where(
            (Delivery.task == task.id)
            & (Delivery.kind.in_(kinds))
            & (Delivery.status.in_(UNSENT_STATUSES))
        )
        .execute()
    )


def _thread_conflict(thread_id: str, existing_id: int | None) -> Conflict:
    return Conflict(
        f"Thread {thread_id!r} already has task {existing_id}; "
        f"update that task with PUT /tasks/{existing_id} instead.",
        existing_task_id=existing_id,
    )
