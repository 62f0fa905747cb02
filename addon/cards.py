"""Card JSON for the Gmail sidebar, in the shape Google renders for HTTP add-ons.

Reference: https://developers.google.com/workspace/add-ons/guides/alternate-runtimes .

Only some text fields are formatted. ``decoratedText.text`` and
``textParagraph.text`` render a small set of HTML tags (<b>, <i>, <font>, <a>,
<br> and a few more; https://developers.google.com/chat/ui/widgets/decorated-text
and .../text-paragraph), so a value from a task or a person is escaped there,
once, by ``escape`` at the spot that builds the widget. Other text fields get
the value as it is, because escaping them would show the entities.

NOTE: Google's pages document the tags for those two ``text`` fields only.
That ``decoratedText.topLabel`` and ``bottomLabel`` take them too is assumed,
so they are escaped as well. That ``cardHeader`` title and subtitle,
``notification.text``, button text and ``selectionInput`` item text are plain
is also assumed, from their reference pages not mentioning formatting. Check
a task with "&" and "<" in its subject on the first live card.
"""

from __future__ import annotations

from datetime import datetime
from html import escape
from typing import Any

from core.config import CRITICALITIES
from core.links import gmail_thread_url
from core.models import Event, Task

# Paths of the endpoints Google calls; the deployment descriptor and the
# buttons turn them into full URLs with the public base URL.
HOMEPAGE_PATH = "/addon/homepage"
MESSAGE_PATH = "/addon/message"
TRACK_PATH = "/addon/actions/track"
STATUS_PATH = "/addon/actions/status"
CRITICALITY_PATH = "/addon/actions/criticality"
ASSIGN_PATH = "/addon/actions/assign"


RECENT_EVENTS = 5

Card = dict[str, Any]


def push_card(card: Card) -> dict[str, Any]:
    """Wrap the first card a trigger shows."""
    return {"action": {"navigations": [{"pushCard": card}]}}


def update_card(card: Card, notification: str | None = None) -> dict[str, Any]:
    """Wrap the card that replaces the current one after a button, with a toast."""
    action: dict[str, Any] = {"navigations": [{"updateCard": card}]}
    if notification:
        action["notification"] = {"text": notification}
    return {"renderActions": {"action": action}}


def task_card(task: Task, viewer: str, base_url: str) -> Card:
    """Build the card of one task: its state, recent changes and the actions."""
    return {
        "header": {
            "title": task.subject or "(no subject)",
            "subtitle": f"Task {task.id} · {task.status}",
        },
        "sections": [
            _details_section(task),
            _status_section(task, viewer, base_url),
            _edit_section(task, base_url),
            _events_section(task),
        ],
    }


def untracked_card(base_url: str) -> Card:
    """Build the card for a thread that no task tracks yet."""
    track = {
        "text": "Track this thread",
        "onClick": {"action": _action(base_url, TRACK_PATH)},
    }
    return {
        "header": {"title": "Not tracked", "subtitle": "threadtask"},
        "sections": [
            {
                "widgets": [
                    {"textParagraph": {"text": "No task tracks this thread yet."}},
                    {"buttonList": {"buttons": [track]}},
                ]
            }
        ],
    }


def missing_task_card(task_id: int | str) -> Card:
    return {
        "header": {"title": "Task not found", "subtitle": "threadtask"},
        "sections": [
            {
                "widgets": [
                    {
                        "textParagraph": {
                            "text": escape(f"Task {task_id} no longer exists.")
                        }
                    }
                ]
            }
        ],
    }


def homepage_card(assigned: list[Task], to_validate: list[Task], more: bool) -> Card:
    """Build the homepage: open tasks of the viewer, each linking to its thread."""
    sections = [
        _task_list_section("Assigned to you", assigned, "You have no open task."),
        _task_list_section(
            "Fixed, waiting for you to close",
            to_validate,
            "No task you created is waiting for you.",
        ),
    ]
    if more:
        sections.append(
            {
                "widgets": [
                    {
                        "textParagraph": {
                            "text": "More tasks are open than this list shows; "
                            "use the API or Slack to see all of them."
                        }
                    }
                ]
            }
        )
    return {
        "header": {"title": "Your open tasks", "subtitle": "threadtask"},
        "sections": sections,
    }


def thread_link(task: Task) -> str | None:
    """Return a Gmail web link that opens the task's thread, or None."""
    return gmail_thread_url(task.thread_id, task.latest_message_id)


def _details_section(task: Task) -> dict[str, Any]:
    rows = [
        ("Status", task.status),
        ("Criticality", task.criticality),
        ("Created by", task.creator_email),
        ("Assigned to", task.assigned_to or "nobody"),
        ("Last reminder", _format_time(task.last_reminder_at) or "none yet"),
        ("Next reminder", _format_time(task.next_reminder_at) or "none"),
    ]
    return {
        "widgets": [
            {"decoratedText": {"topLabel": label, "text": escape(value)}}
            for label, value in rows
        ]
    }


def _status_section(task: Task, viewer: str, base_url: str) -> dict[str, Any]:
    buttons = []
    if task.status == "open":
        buttons.append(_status_button(task, "Mark fixed", "fixed", base_url))
    else:
        buttons.append(_status_button(task, "Reopen", "open", base_url))
    # Only the creator gets a Close button, and update_task checks it again.
    if task.status != "closed" and viewer == task.creator_email:
        buttons.append(_status_button(task, "Close", "closed", base_url))
    return {"widgets": [{"buttonList": {"buttons": buttons}}]}


def _status_button(task: Task, text: str, status: str, base_url: str) -> dict[str, Any]:
    action = _action(
        base_url, STATUS_PATH, task_id=task.id, version=task.version, status=status
    )
    return {"text": text, "onClick": {"action": action}}


def _edit_section(task: Task, base_url: str) -> dict[str, Any]:
    criticality = {
        "selectionInput": {
            "name": "criticality",
            "label": "Criticality",
            "type": "DROPDOWN",
            "items": [
                {"text": level, "value": level, "selected": level == task.criticality}
                for level in CRITICALITIES
            ],
            "onChangeAction": _action(
                base_url, CRITICALITY_PATH, task_id=task.id, version=task.version
            ),
        }
    }
    assignee = {
        "textInput": {
            "name": "assignee",
            "label": "Assignee",
            "type": "SINGLE_LINE",
            "value": task.assigned_to,
            "hintText": "An email address; leave empty to unassign.",
        }
    }
    assign = {
        "text": "Assign",
        "onClick": {
            "action": _action(
                base_url, ASSIGN_PATH, task_id=task.id, version=task.version
            )
        },
    }
    return {
        "header": "Change",
        "widgets": [criticality, assignee, {"buttonList": {"buttons": [assign]}}],
    }


def _events_section(task: Task) -> dict[str, Any]:
    events = list(
        Event.select()
        .where(Event.task == task)
        .order_by(Event.created_at.desc(), Event.id.desc())
        .limit(RECENT_EVENTS)
    )
    widgets = [
        {
            "decoratedText": {
                "topLabel": escape(_event_label(event)),
                "text": escape(_describe_event(event)),
                "wrapText": True,
            }
        }
        for event in events
    ]
    if not widgets:
        widgets = [{"textParagraph": {"text": "No changes yet."}}]
    return {"header": "Recent changes", "collapsible": False, "widgets": widgets}


def _event_label(event: Event) -> str:
    return f"{_format_time(event.created_at)} · {event.actor} via {event.channel}"


def _describe_event(event: Event) -> str:
    if event.field == "created":
        return "created the task"
    old = event.old_value or "(empty)"
    new = event.new_value or "(empty)"
    return f"{event.field}: {old} → {new}"


def _task_list_section(header: str, tasks: list[Task], empty: str) -> dict[str, Any]:
    widgets: list[dict[str, Any]] = [
        {"decoratedText": _task_line(task)} for task in tasks
    ]
    if not widgets:
        widgets = [{"textParagraph": {"text": empty}}]
    return {"header": header, "widgets": widgets}


def _task_line(task: Task) -> dict[str, Any]:
    line: dict[str, Any] = {
        "topLabel": escape(f"Task {task.id} · {task.criticality}"),
        "text": escape(task.subject or "(no subject)"),
        "bottomLabel": escape(f"{task.status}, created by {task.creator_email}"),
        "wrapText": True,
    }
    link = thread_link(task)
    if link:
        line["onClick"] = {"openLink": {"url": link}}
    return line


def _action(base_url: str, path: str, **parameters: object) -> dict[str, Any]:
    # Parameters travel as strings: Google's card schema types them so.
    action: dict[str, Any] = {"function": base_url + path}
    if parameters:
        action["parameters"] = [
            {"key": key, "value": str(value)} for key, value in parameters.items()
        ]
    return action


def _format_time(value: datetime | None) -> str:
    if value is None:
        return ""
    return value.strftime("%Y-%m-%d %H:%M UTC")
