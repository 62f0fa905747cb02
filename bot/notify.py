"""Slack direct messages to people who were just assigned a task.

The core sends ``core.tasks.task_changed`` after every committed change,
whatever the channel. The receiver here copies the few values it needs and
hands the Slack calls to one background thread, so a slow or failing Slack
never delays or breaks the change itself.
"""

from __future__ import annotations

import logging
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError, SlackClientError

from bot import views
from bot.mrkdwn import code, plain
from core.config import Settings
from core.tasks import Actor, task_changed

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class AssignmentNotice:
    """The content of a direct message about a new assignment."""

    task_id: int
    subject: str
    assignee: str
    assigned_by: str
    # The Gmail link to the thread, or "" with the thread id as text instead.
    link: str
    thread_id: str


class AssignmentNotifier:
    """Sends one Slack direct message per assignment, in a background thread."""

    def __init__(self, client: WebClient, settings: Settings) -> None:
        self.client = client
        self.settings = settings
        self.executor = ThreadPoolExecutor(
            max_workers=1, thread_name_prefix="slack-notify"
        )

    def task_changed(self, task: Any, actor: Actor, changes: dict) -> None:
        """Queue a notice if ``changes`` gave the task a new assignee."""
        assigned = "assigned_to" in changes or (
            "created" in changes and task.assigned_to
        )
        if not assigned or not task.assigned_to:
            return
        if task.assigned_to == actor.email:
            # People who assign themselves know it already.
            return

        notice = AssignmentNotice(
            task_id=task.id,
            subject=task.subject or "(no subject)",
            assignee=task.assigned_to,
            assigned_by=actor.email,
            link=views.thread_url(task) or "",
            thread_id=task.thread_id or "",
        )
        self.executor.submit(self.send, notice)

    def send(self, notice: AssignmentNotice) -> bool:
        """Send the direct message; log and return False if it could not be sent."""
        try:
            user = self.client.users_lookupByEmail(email=notice.assignee)["user"]
            channel = self.client.conversations_open(users=user["id"])["channel"]["id"]
            self.client.chat_postMessage(
                channel=channel, text=_text(notice), blocks=_blocks(notice)
            )
        except SlackApiError as exc:
            error = exc.response.get("error", "unknown_error")
            if error == "users_not_found":
                logger.debug("task %s: assignee has no Slack account", notice.task_id)
            else:
                logger.warning(
                    "task %s: Slack assignment message failed: %s",
                    notice.task_id,
                    error,
                )
            return False
        except (SlackClientError, OSError):
            logger.exception("task %s: Slack assignment message failed", notice.task_id)
            return False

        logger.info(
            "task %s: sent assignment message to Slack user %s",
            notice.task_id,
            user["id"],
        )
        return True

    def shutdown(self) -> None:
        """Stop receiving changes, send the queued messages, then stop the thread."""
        global _notifier
        if _notifier is self:
            _notifier = None
        self.executor.shutdown(wait=True)


def _text(notice: AssignmentNotice) -> str:
    assigned_by = plain(notice.assigned_by, views.ADDRESS_CHARS)
    subject = plain(notice.subject, views.NOTIFICATION_SUBJECT_CHARS)
    return f"{assigned_by} assigned task #{notice.task_id} to you: {subject}"


def _blocks(notice: AssignmentNotice) -> views.Blocks:
    subject = plain(notice.subject, views.DETAIL_SUBJECT_CHARS)
    if notice.link:
        thread = f"<{notice.link}|{subject}>"
    else:
        thread_id = code(notice.thread_id, views.THREAD_ID_CHARS)
        thread = f"{subject}\nthread {thread_id}"
    assigned_by = plain(notice.assigned_by, views.ADDRESS_CHARS)
    return [
        views.section(
            f"{assigned_by} assigned task *#{notice.task_id}* to you:\n{thread}"
        )
    ]


# One notifier per process: the latest app built with notices on replaces the
# previous one, so building a second app (as tests do) sends no duplicates.
_notifier: AssignmentNotifier | None = None


def _on_task_changed(task: Any, *, actor: Actor, changes: dict, **_: Any) -> None:
    notifier = _notifier
    if notifier is None:
        return
    try:
        notifier.task_changed(task, actor, changes)
    except Exception:
        # The core sends this signal after its commit; a failure here must
        # not reach the caller, whose change has been applied.
        logger.exception(
            "task %s: could not queue the Slack assignment message", task.id
        )


def install(notifier: AssignmentNotifier | None) -> None:
    """Make ``notifier`` receive task changes, or stop notices with None."""
    global _notifier
    previous, _notifier = _notifier, notifier
    if previous is not None and previous is not notifier:
        previous.executor.shutdown(wait=False)
    task_changed.connect(_on_task_changed)
