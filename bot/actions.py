"""Run a parsed command against the task core and build the reply.

Every change goes through ``core.tasks.update_task`` as the caller's verified
email on the "slack" channel, so the core's rules and permissions apply.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from slack_sdk import WebClient

from bot import views
from bot.commands import FORMS, STATUS_COMMANDS, Command, CommandError, preview
from bot.identity import IdentityCache, IdentityUnavailable, SlackIdentity
from bot.mrkdwn import plain
from core import query as task_query
from core.config import Settings
from core.models import Delivery, Event, Task
from core.tasks import Actor, get_task, update_task

logger = logging.getLogger(__name__)

LIST_LIMIT = 20
DEFAULT_QUERY = "assigned_to:me status:open,fixed"
SHOWN_EVENTS = 5
SHOWN_DELIVERIES = 5
# Characters of a query error shown; the core's message may quote the query.
QUERY_ERROR_CHARS = 300


@dataclass
class Reply:
    """An ephemeral reply to the caller, and a public note if a task changed."""

    text: str
    blocks: views.Blocks = field(default_factory=list)
    announcement: str = ""


def problem_reply(message: str, hint: str = "") -> Reply:
    text, blocks = views.problem(message, hint)
    return Reply(text, blocks)


def list_tasks(command: Command, caller: SlackIdentity, settings: Settings) -> Reply:
    """List the tasks matching the query, newest first, one page at most."""
    text = command.query or DEFAULT_QUERY
    usage = views.usage(settings.slack_command, FORMS["list"])
    if not caller.email and not command.query:
        return problem_reply(
            f"I cannot list the tasks assigned to you because {caller.reason}. "
            "Give a query that does not use me, such as status:open.",
            usage,
        )

    try:
        condition = task_query.compile_query(text, me=caller.email or None)
    except task_query.QueryError as exc:
        error = exc.message
        if len(error) > QUERY_ERROR_CHARS:
            error = error[: QUERY_ERROR_CHARS - 1] + "…"
        message = f"The query {preview(text)} is invalid: {error}."
        if not caller.email:
            message += f" The word me cannot stand for you because {caller.reason}."
        return problem_reply(message, usage + "   (for example: list status:open)")

    matching = Task.select().where(condition)
    total = matching.count()
    page = list(
        matching.order_by(Task.created_at.desc(), Task.id.desc()).limit(LIST_LIMIT)
    )
    text, blocks = views.task_list(page, total, text)
    return Reply(text, blocks)


def show_task(command: Command) -> Reply:
    """Show one task with its latest events and reminders."""
    task = get_task(command.task_id)
    events = list(
        Event.select()
        .where(Event.task == task)
        .order_by(Event.created_at.desc(), Event.id.desc())
        .limit(SHOWN_EVENTS)
    )
    deliveries = list(
        Delivery.select()
        .where(Delivery.task == task)
        .order_by(Delivery.scheduled_at.desc(), Delivery.id.desc())
        .limit(SHOWN_DELIVERIES)
    )
    text, blocks = views.task_detail(task, events, deliveries)
    return Reply(text, blocks)


def change_task(
    command: Command,
    caller: SlackIdentity,
    client: WebClient,
    identities: IdentityCache,
) -> Reply:
    """Apply a status, criticality or assignee change as the caller.

    Raises core.errors.TaskError when the core rejects the change, and
    CommandError when the named Slack user is not found or has no usable email.
    """
    fields = _fields(command, caller, client, identities)
    actor = Actor(email=caller.email, channel="slack")
    version_before = get_task(command.task_id).version
    task = update_task(actor, command.task_id, fields)

    name, value = next(iter(fields.items()))
    label = "assignee" if name == "assigned_to" else name
    if task.version == version_before:
        text = f"Task #{task.id} already has {label} {plain(value)}; nothing changed."
        return Reply(text, [views.section(text)])

    text = f"Task #{task.id} now has {label} {plain(value)}."
    subject = views.subject_of(task, views.NOTIFICATION_SUBJECT_CHARS)
    note = (
        f"{plain(caller.email)} set the {label} of task #{task.id} to "
        f"{plain(value)}: {subject}"
    )
    return Reply(
        text, [views.section(text), views.section(views.task_line(task))], note
    )


def _fields(
    command: Command,
    caller: SlackIdentity,
    client: WebClient,
    identities: IdentityCache,
) -> dict[str, str]:
    if command.name in STATUS_COMMANDS:
        return {"status": STATUS_COMMANDS[command.name]}
    if command.name == "crit":
        return {"criticality": command.level}

    assignee = command.assignee
    if assignee is None or assignee.is_caller:
        return {"assigned_to": caller.email}
    if assignee.email:
        return {"assigned_to": assignee.email}
    person = _lookup_assignee(client, identities, caller, assignee.slack_user_id)
    if not person.email:
        raise CommandError(
            f"The Slack user you named cannot be assigned because {person.reason}; "
            "give their email address instead."
        )
    return {"assigned_to": person.email}


def _lookup_assignee(
    client: WebClient, identities: IdentityCache, caller: SlackIdentity, user_id: str
) -> SlackIdentity:
    """Look up the Slack user named by a mention; raise CommandError on failure."""
    try:
        return identities.lookup(client, user_id)
    except IdentityUnavailable as exc:
        logger.warning(
            "Slack user %s: assignee %s could not be looked up: %s",
            caller.user_id,
            user_id,
            exc.error,
        )
        if exc.not_found:
            message = f"Slack user <@{user_id}> was not found"
        else:
            message = f"Slack did not return the profile of <@{user_id}> ({exc.error})"
        raise CommandError(f"{message}; give their email address instead.") from None
