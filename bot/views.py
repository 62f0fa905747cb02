"""Block Kit messages for the slash command replies.

Each builder returns ``(text, blocks)``: Slack shows ``text`` in
notifications and where blocks cannot be shown, and renders both as mrkdwn.
Every value that comes from mail, users or Slack goes through
``mrkdwn.plain`` or ``mrkdwn.code``, so it is shown as written and cut to a
budget that counts its escaped length.
"""

from __future__ import annotations

from calendar import timegm
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from bot.mrkdwn import code, plain
from core.links import gmail_thread_url
from core.models import Delivery, Event, Task
from core.timeutil import isoformat

Blocks = list[dict[str, Any]]

# Slack rejects a message whose section text is longer than 3000 characters.
# The budgets below, in characters after escaping, keep the longest section
# (five events or five reminders) under that limit with room to spare.
LIST_SUBJECT_CHARS = 150
DETAIL_SUBJECT_CHARS = 2000
NOTIFICATION_SUBJECT_CHARS = 300
ADDRESS_CHARS = 120
VALUE_CHARS = 80
ERROR_CHARS = 160
THREAD_ID_CHARS = 120
QUERY_CHARS = 120
PROBLEM_CHARS = 1000
# Field names, channels, kinds and statuses come from the core and are short.
NAME_CHARS = 40


def section(text: str) -> dict[str, Any]:
    return {"type": "section", "text": {"type": "mrkdwn", "text": text}}


def context(text: str) -> dict[str, Any]:
    return {"type": "context", "elements": [{"type": "mrkdwn", "text": text}]}


def thread_url(task: Task) -> str | None:
    """Return the Gmail web link to the task's thread, or None."""
    return gmail_thread_url(task.thread_id, task.latest_message_id)


def thread_reference(task: Task, label: str) -> str:
    """Return a link to the thread with ``label``, or the thread id as text."""
    url = thread_url(task)
    if url is None:
        return f"thread {code(task.thread_id or '(none)', THREAD_ID_CHARS)}"
    return f"<{url}|{label}>"


def slack_date(value: datetime | None) -> str:
    """Format a stored UTC time so Slack shows it in the reader's time zone."""
    if value is None:
        return "never"
    seconds = timegm(value.timetuple())
    return f"<!date^{seconds}^{{date_short_pretty}} {{time}}|{isoformat(value)}>"


def subject_of(task: Task, limit: int) -> str:
    return plain(task.subject or "(no subject)", limit)


def task_line(task: Task) -> str:
    assignee = (
        plain(task.assigned_to, ADDRESS_CHARS) if task.assigned_to else "unassigned"
    )
    return (
        f"*#{task.id}* {subject_of(task, LIST_SUBJECT_CHARS)}\n"
        f"{task.status} · {task.criticality} · {assignee} · "
        f"{thread_reference(task, 'thread')}"
    )


def task_list(tasks: Sequence[Task], total: int, query: str) -> tuple[str, Blocks]:
    """Render up to one page of tasks, newest first, with a count of the rest."""
    shown_query = code(query, QUERY_CHARS)
    if not tasks:
        text = f"No tasks match {shown_query}."
        return text, [section(text)]

    matches = "1 task matches" if total == 1 else f"{total} tasks match"
    text = f"{matches} {shown_query}"
    blocks: Blocks = [section(f"{text}, newest first:")]
    blocks += [section(task_line(task)) for task in tasks]
    if total > len(tasks):
        blocks.append(
            context(
                f"{total - len(tasks)} more not shown; narrow the query to see them."
            )
        )
    return f"{text}.", blocks


def task_detail(
    task: Task, events: Sequence[Event], deliveries: Sequence[Delivery]
) -> tuple[str, Blocks]:
    """Render one task with its latest events and reminders."""
    text = f"Task #{task.id}: {subject_of(task, NOTIFICATION_SUBJECT_CHARS)}"
    assignee = plain(task.assigned_to, ADDRESS_CHARS) or "nobody"
    fields = (
        f"*Status:* {task.status}    *Criticality:* {task.criticality}\n"
        f"*Assigned to:* {assignee}    "
        f"*Created by:* {plain(task.creator_email, ADDRESS_CHARS)}\n"
        f"*Created:* {slack_date(task.created_at)}    "
        f"*Next reminder:* {slack_date(task.next_reminder_at)}\n"
        f"{thread_reference(task, 'Open the thread')}"
    )
    blocks: Blocks = [
        section(f"*#{task.id}* {subject_of(task, DETAIL_SUBJECT_CHARS)}"),
        section(fields),
        section("*Latest changes*\n" + _event_lines(events)),
        section("*Reminders*\n" + _delivery_lines(deliveries)),
    ]
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
                f"set {plain(event.field, NAME_CHARS)} from {_value(event.old_value)} "
                f"to {_value(event.new_value)}"
            )
        )
        lines.append(
            f"{slack_date(event.created_at)} {plain(event.actor, ADDRESS_CHARS)} "
            f"({plain(event.channel, NAME_CHARS)}) {change}"
        )
    return "\n".join(lines)


def _value(value: str | None) -> str:
    return plain(value or "(empty)", VALUE_CHARS)


def _delivery_lines(deliveries: Sequence[Delivery]) -> str:
    if not deliveries:
        return "None."
    lines = []
    for delivery in deliveries:
        when = delivery.sent_at or delivery.scheduled_at
        recipient = plain(delivery.recipient, ADDRESS_CHARS) or "(default recipient)"
        kind = plain(delivery.kind, NAME_CHARS)
        status = plain(delivery.status, NAME_CHARS)
        line = f"{slack_date(when)} {kind} to {recipient}: {status}"
        if delivery.attempts > 1:
            line += f" after {delivery.attempts} attempts"
        if delivery.error:
            line += f" ({plain(delivery.error, ERROR_CHARS)})"
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
    lines = [f"`{command} {example}`  {what}" for example, what in examples]
    text = f"Commands of {command}:"
    return text, [section(f"*{text}*\n" + "\n".join(lines))]


def problem(message: str, hint: str = "") -> tuple[str, Blocks]:
    """Explain what went wrong, then what to do next.

    ``message`` is plain text that may quote the user's input, and is cut to
    PROBLEM_CHARS. ``hint`` is mrkdwn written by this app.
    """
    text = plain(message, PROBLEM_CHARS)
    if hint:
        text += "\n" + hint
    return text, [section(text)]


def usage(command: str, form: str | None) -> str:
    """Return the hint with the correct form of a command, or the help command."""
    if form:
        return f"Use: `{command} {form}`"
    return f"See `{command} help` for the commands."
