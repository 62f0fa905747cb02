"""Block Kit messages for the slash command replies.

Each builder returns ``(text, blocks)``: Slack shows ``text`` in
notifications and where blocks cannot be shown.
"""

from __future__ import annotations

from calendar import timegm
from collections.abc import Sequence
from datetime import datetime
from typing import Any
from urllib.parse import quote

from core.config import Settings
from core.models import Delivery, Event, Task
from core.timeutil import isoformat

Blocks = list[dict[str, Any]]
MAX_SUBJECT_CHARS = 150
# Slack rejects a section longer than 3000 characters, and five changes of a
# 998-character subject would pass that, so each shown value is shortened.
MAX_VALUE_CHARS = 80


def escape(text: str) -> str:
    """Escape the three characters that Slack's mrkdwn treats as markup.

    https://api.slack.com/reference/surfaces/formatting#escaping
    """
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def section(text: str) -> dict[str, Any]:
    return {"type": "section", "text": {"type": "mrkdwn", "text": text}}


def context(text: str) -> dict[str, Any]:
    return {"type": "context", "elements": [{"type": "mrkdwn", "text": text}]}


def thread_url(task: Task, settings: Settings) -> str:
    """Return a link to the task's email thread, or to the task itself."""
    if settings.mail_backend == "gmail":
        account = quote(settings.mailbox_address, safe="@")
        return f"https://mail.google.com/mail/u/{account}/#all/{quote(task.thread_id)}"
    return f"{settings.public_base_url.rstrip('/')}/tasks/{task.id}"


def slack_date(value: datetime | None) -> str:
    """Format a stored UTC time so Slack shows it in the reader's time zone."""
    if value is None:
        return "never"
    seconds = timegm(value.timetuple())
    return f"<!date^{seconds}^{{date_short_pretty}} {{time}}|{isoformat(value)}>"


def shorten(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def task_line(task: Task, settings: Settings) -> str:
    subject = shorten(task.subject or "(no subject)", MAX_SUBJECT_CHARS)
    assignee = escape(task.assigned_to) if task.assigned_to else "unassigned"
    return (
        f"*#{task.id}* {escape(subject)}\n"
        f"{task.status} · {task.criticality} · {assignee} · "
        f"<{thread_url(task, settings)}|thread>"
    )


def task_list(
    tasks: Sequence[Task], total: int, query: str, settings: Settings
) -> tuple[str, Blocks]:
    """Render up to one page of tasks, newest first, with a count of the rest."""
    if not tasks:
        text = f"No tasks match `{escape(query)}`."
        return text, [section(text)]

    matches = "1 task matches" if total == 1 else f"{total} tasks match"
    text = f"{matches} `{escape(query)}`"
    blocks: Blocks = [section(f"{text}, newest first:")]
    blocks += [section(task_line(task, settings)) for task in tasks]
    if total > len(tasks):
        blocks.append(
            context(
                f"{total - len(tasks)} more not shown; narrow the query to see them."
            )
        )
    return f"{text}.", blocks


def task_detail(
    task: Task,
    events: Sequence[Event],
    deliveries: Sequence[Delivery],
    settings: Settings,
) -> tuple[str, Blocks]:
    """Render one task with its latest events and reminders."""
    text = f"Task #{task.id}: {task.subject or '(no subject)'}"
    fields = (
        f"*Status:* {task.status}    *Criticality:* {task.criticality}\n"
        f"*Assigned to:* {escape(task.assigned_to) or 'nobody'}    "
        f"*Created by:* {escape(task.creator_email)}\n"
        f"*Created:* {slack_date(task.created_at)}    "
        f"*Next reminder:* {slack_date(task.next_reminder_at)}\n"
        f"<{thread_url(task, settings)}|Open the thread>"
    )
    blocks: Blocks = [section(f"*#{task.id}* {escape(task.subject or '(no subject)')}")]
    blocks.append(section(fields))
    blocks.append(section("*Latest changes*\n" + _event_lines(events)))
    blocks.append(section("*Reminders*\n" + _delivery_lines(deliveries)))
    return text, blocks


def _event_lines(events: Sequence[Event]) -> str:
    if not events:
        return "None."
    lines = []
    for event in events:
        change = (
            "created the task"
            if event.field == "created"
            else (
                f"set {event.field} from {_value(event.old_value)} "
                f"to {_value(event.new_value)}"
            )
        )
        lines.append(
            f"{slack_date(event.created_at)} {escape(event.actor)} "
            f"({event.channel}) {change}"
        )
    return "\n".join(lines)


def _value(value: str | None) -> str:
    return escape(shorten(value or "(empty)", MAX_VALUE_CHARS))


def _delivery_lines(deliveries: Sequence[Delivery]) -> str:
    if not deliveries:
        return "None."
    lines = []
    for delivery in deliveries:
        when = delivery.sent_at or delivery.scheduled_at
        line = (
            f"{slack_date(when)} {delivery.kind} to "
            f"{escape(delivery.recipient) or '(default recipient)'}: {delivery.status}"
        )
        if delivery.attempts > 1:
            line += f" after {delivery.attempts} attempts"
        if delivery.error:
            line += f" ({escape(delivery.error[:200])})"
        lines.append(line)
    return "\n".join(lines)


def help_message(command: str) -> tuple[str, Blocks]:
    """List the commands with an example of each."""
    examples = [
        ("help", "Show this list."),
        ("list", "Your open and fixed tasks, newest first."),
        (
            "list status:open criticality:high,critical",
            "Tasks matching a query, in the language of GET /tasks?q=.",
        ),
        (
            "list assigned_to:me OR creator_email:me",
            "Tasks assigned to you or created by you.",
        ),
        ("show 42", "Task 42 with its latest changes and reminders."),
        ("fixed 42", "Mark task 42 fixed."),
        ("open 42", "Reopen task 42."),
        ("close 42", "Close task 42; only its creator can."),
        ("crit 42 high", "Set the criticality: low, medium, high or critical."),
        ("assign 42 @alex", "Assign task 42 to a Slack user, an email address or me."),
    ]
    lines = [f"`{command} {example}`  {escape(what)}" for example, what in examples]
    text = f"Commands of {command}:"
    return text, [section(f"*{text}*\n" + "\n".join(lines))]


def problem(message: str, command: str, form: str | None) -> tuple[str, Blocks]:
    """Explain what went wrong and, when known, the correct form."""
    text = message
    if form:
        text += f"\nUse: `{command} {form}`"
    else:
        text += f"\nSee `{command} help` for the commands."
    return text, [section(escape(message) + text[len(message) :])]
