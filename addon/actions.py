"""Handlers of the add-on's triggers and buttons.

Google's endpoints and the preview page call the same handlers.

A handler takes the acting user, the event object Google posted and the
request context, and returns the card response. Task changes go through
core.tasks, so the rules and the recorded events are those of the API.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from googleapiclient.errors import HttpError

from addon import cards
from addon.gmail import GmailServiceBuilder, read_open_message
from core.errors import Conflict, InvalidField, NotFound, PreconditionFailed, TaskError
from core.models import Task
from core.tasks import Actor, create_task, update_task

logger = logging.getLogger(__name__)

MAX_HOMEPAGE_TASKS = 50

STATUS_MESSAGES = {
    "fixed": "Task {id} is marked fixed.",
    "open": "Task {id} is open again.",
    "closed": "Task {id} is closed.",
}


@dataclass(frozen=True)
class Context:
    """Request data that handlers need besides the event."""

    base_url: str
    build_gmail: GmailServiceBuilder


Handler = Callable[[Actor, dict[str, Any], Context], dict[str, Any]]


def show_homepage(
    actor: Actor, event: dict[str, Any], context: Context
) -> dict[str, Any]:
    """Homepage trigger: list the caller's open tasks."""
    tasks = list(
        Task.select()
        .where(
            ((Task.assigned_to == actor.email) & (Task.status == "open"))
            | ((Task.creator_email == actor.email) & (Task.status == "fixed"))
        )
        .order_by(Task.next_reminder_at, Task.id)
        .limit(MAX_HOMEPAGE_TASKS + 1)
    )
    shown = tasks[:MAX_HOMEPAGE_TASKS]
    assigned = [task for task in shown if task.status == "open"]
    to_validate = [task for task in shown if task.status == "fixed"]
    card = cards.homepage_card(assigned, to_validate, more=len(tasks) > len(shown))

    return cards.push_card(card)


def show_message(
    actor: Actor, event: dict[str, Any], context: Context
) -> dict[str, Any]:
    """Contextual trigger: show the task of the open thread, or offer to track it."""
    thread_id = _gmail_field(event, "threadId")
    task = Task.for_thread(thread_id) if thread_id else None
    if task is None:
        return cards.push_card(cards.untracked_card(context.base_url))

    return cards.push_card(cards.task_card(task, actor.email, context.base_url))


def track_thread(
    actor: Actor, event: dict[str, Any], context: Context
) -> dict[str, Any]:
    """Create a task from the open message, with the caller as its creator."""
    thread_id = _gmail_field(event, "threadId")
    message_id = _gmail_field(event, "messageId")
    access_token = _gmail_field(event, "accessToken")
    oauth_token = event.get("authorizationEventObject", {}).get("userOAuthToken", "")
    if not (thread_id and message_id and access_token and oauth_token):
        return cards.update_card(
            cards.untracked_card(context.base_url),
            "Open a message in Gmail to track its thread.",
        )

    existing = Task.for_thread(thread_id)
    if existing is not None:
        return _task_response(existing, actor, context, _already_tracked(existing.id))

    try:
        message = read_open_message(
            context.build_gmail, oauth_token, message_id, access_token
        )
    except HttpError as exc:
        logger.warning(
            "Gmail returned HTTP %s for message %s of %s",
            exc.status_code,
            message_id,
            actor.email,
        )
        return cards.update_card(
            cards.untracked_card(context.base_url),
            f"Gmail did not return the open message (HTTP {exc.status_code}); "
            "open it again and retry.",
        )

    fields = {
        "thread_id": thread_id,
        "subject": message.subject,
        "latest_message_id": message.message_id,
        "html": message.html,
    }
    try:
        task = create_task(actor, fields)
    except Conflict as exc:
        # Someone tracked the thread between the check above and this insert.
        logger.info("thread %s was tracked by another request first", thread_id)
        other = Task.get_or_none(Task.id == exc.existing_task_id)
        if other is None:
            return cards.update_card(cards.untracked_card(context.base_url), exc.detail)
        return _task_response(other, actor, context, _already_tracked(other.id))
    except TaskError as exc:
        logger.info(
            "tracking thread %s rejected for %s: %s", thread_id, actor.email, exc
        )
        return cards.update_card(cards.untracked_card(context.base_url), exc.detail)

    return _task_response(
        task, actor, context, f"Task {task.id} now tracks this thread."
    )


def change_status(
    actor: Actor, event: dict[str, Any], context: Context
) -> dict[str, Any]:
    """Mark fixed, Reopen and Close buttons."""
    status = _parameter(event, "status")
    return _update(
        actor,
        event,
        context,
        {"status": status},
        lambda task: STATUS_MESSAGES.get(task.status, "Task {id} changed.").format(
            id=task.id
        ),
    )


def change_criticality(
    actor: Actor, event: dict[str, Any], context: Context
) -> dict[str, Any]:
    """Criticality selector."""
    criticality = _form_input(event, "criticality")
    return _update(
        actor,
        event,
        context,
        {"criticality": criticality},
        lambda task: f"Task {task.id} is now {task.criticality}.",
    )


def assign(actor: Actor, event: dict[str, Any], context: Context) -> dict[str, Any]:
    """Assignee field and its Assign button; an empty field unassigns."""
    assignee = _form_input(event, "assignee")
    return _update(
        actor,
        event,
        context,
        {"assigned_to": assignee},
        lambda task: (
            f"Task {task.id} is assigned to {task.assigned_to}."
            if task.assigned_to
            else f"Task {task.id} is unassigned."
        ),
    )


# Endpoint path -> handler, for the blueprint and for the preview's buttons.
HANDLERS: dict[str, Handler] = {
    cards.HOMEPAGE_PATH: show_homepage,
    cards.MESSAGE_PATH: show_message,
    cards.TRACK_PATH: track_thread,
    cards.STATUS_PATH: change_status,
    cards.CRITICALITY_PATH: change_criticality,
    cards.ASSIGN_PATH: assign,
}


def _update(
    actor: Actor,
    event: dict[str, Any],
    context: Context,
    fields: dict[str, Any],
    describe: Callable[[Task], str],
) -> dict[str, Any]:
    raw_id = _parameter(event, "task_id")
    try:
        task_id = _integer("task_id", raw_id)
        version = _integer("version", _parameter(event, "version") or None)
        task = update_task(actor, task_id, fields, expected_version=version)
    except PreconditionFailed:
        logger.info("stale card for task %s from %s", task_id, actor.email)
        current = Task.get_or_none(Task.id == task_id)
        message = (
            f"Task {task_id} changed since this card was shown, so nothing was "
            "changed; check the current state below and try again."
        )
        return _task_response(current, actor, context, message, task_id)
    except TaskError as exc:
        logger.info("change of task %s rejected for %s: %s", raw_id, actor.email, exc)
        current = None if isinstance(exc, NotFound) else _task_or_none(raw_id)
        return _task_response(current, actor, context, exc.detail, raw_id)

    return _task_response(task, actor, context, describe(task))


def _task_response(
    task: Task | None,
    actor: Actor,
    context: Context,
    notification: str,
    task_id: object = "",
) -> dict[str, Any]:
    if task is None:
        return cards.update_card(cards.missing_task_card(str(task_id)), notification)
    return cards.update_card(
        cards.task_card(task, actor.email, context.base_url), notification
    )


def _task_or_none(raw_id: str) -> Task | None:
    if not is_whole_number(raw_id):
        return None
    return Task.get_or_none(Task.id == int(raw_id))


def is_whole_number(value: str) -> bool:
    # str.isdigit() also accepts digits such as "²" that int() rejects.
    return value.isascii() and value.isdigit()


def _already_tracked(task_id: int) -> str:
    return f"This thread is already tracked as task {task_id}."


def _integer(name: str, value: str | None) -> Any:
    if value is None:
        return None
    if not is_whole_number(value):
        raise InvalidField(name, value, "must be a whole number")
    return int(value)


def _gmail_field(event: dict[str, Any], name: str) -> str:
    gmail = event.get("gmail")
    value = gmail.get(name) if isinstance(gmail, dict) else None
    return value if isinstance(value, str) else ""


def _parameter(event: dict[str, Any], key: str) -> str:
    common = event.get("commonEventObject")
    parameters = common.get("parameters") if isinstance(common, dict) else None
    value = parameters.get(key) if isinstance(parameters, dict) else None
    return value if isinstance(value, str) else ""


def _form_input(event: dict[str, Any], name: str) -> str:
    """Return the first value of a text or selection input, or "" if absent."""
    common = event.get("commonEventObject")
    inputs = common.get("formInputs") if isinstance(common, dict) else None
    field = inputs.get(name) if isinstance(inputs, dict) else None
    values = (
        (field or {}).get("stringInputs", {}).get("value")
        if isinstance(field, dict)
        else None
    )
    if isinstance(values, list) and values and isinstance(values[0], str):
        return values[0]
    return ""
