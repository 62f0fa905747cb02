"""Slack slash commands served by slack-bolt inside the Flask app."""

from __future__ import annotations

import logging
import re
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from flask import Flask, Response, request
from slack_bolt import App
from slack_bolt.adapter.flask import SlackRequestHandler
from slack_sdk import WebClient

from bot import notify
from bot.notify import AssignmentNotifier
from bot.slack_app import build_app, build_client
from core.config import ConfigError, Settings

logger = logging.getLogger(__name__)

EVENTS_PATH = "/slack/events"
# Slash command names are lower-case, start with "/" and have no spaces.
_COMMAND_NAME = re.compile(r"^/[a-z0-9_\-]{1,31}$")
# Threads that run commands after their acknowledgement.
COMMAND_THREADS = 4


@dataclass
class SlackExtension:
    """The running Slack integration, stored in ``app.extensions["slack"]``."""

    bolt: App
    handler: SlackRequestHandler
    executor: ThreadPoolExecutor
    notifier: AssignmentNotifier | None = None

    def shutdown(self) -> None:
        """Wait for running commands and queued messages, then stop their threads."""
        self.executor.shutdown(wait=True)
        if self.notifier is not None:
            self.notifier.shutdown()


def init_app(app: Flask) -> None:
    """Register POST /slack/events and the assignment messages on ``app``."""
    settings: Settings = app.config["SETTINGS"]
    if not check_settings(settings):
        notify.install(None)
        app.add_url_rule(EVENTS_PATH, "slack_events", _slack_off, methods=["POST"])
        return

    client = build_client(settings)
    executor = ThreadPoolExecutor(
        max_workers=COMMAND_THREADS, thread_name_prefix="slack-command"
    )
    bolt = build_app(settings, executor)
    handler = SlackRequestHandler(bolt)
    extension = SlackExtension(bolt, handler, executor)
    app.extensions["slack"] = extension

    def slack_events() -> Response:
        # The handler reads the raw body itself: touching request.form here
        # would consume it, and bolt's signature check would then fail.
        return handler.handle(request)

    app.add_url_rule(EVENTS_PATH, "slack_events", slack_events, methods=["POST"])

    extension.notifier = start_assignment_notices(settings, client)
    logger.debug(
        "Slack command %s on %s; assignment messages %s",
        settings.slack_command,
        EVENTS_PATH,
        "on" if extension.notifier else "off",
    )


def start_assignment_notices(
    settings: Settings, client: WebClient | None = None
) -> AssignmentNotifier | None:
    """Send Slack direct messages for assignments made in this process.

    The web app calls this from init_app, and the clock process, whose mail
    poll assigns tasks, calls it at start. Returns the notifier, or None when
    Slack or the notices are off.
    """
    notifier = None
    if check_settings(settings) and settings.slack_notify_assignee:
        notifier = AssignmentNotifier(client or build_client(settings), settings)
    notify.install(notifier)
    return notifier


def check_settings(settings: Settings) -> bool:
    """Return whether Slack is on; raise ConfigError if half configured."""
    secret, token = settings.slack_signing_secret, settings.slack_bot_token
    if not secret and not token:
        return False
    if not secret or not token:
        missing = "SLACK_SIGNING_SECRET" if not secret else "SLACK_BOT_TOKEN"
        present = "SLACK_BOT_TOKEN" if not secret else "SLACK_SIGNING_SECRET"
        raise ConfigError(
            f"invalid configuration:\n  {missing} is empty but {present} is set; "
            "set both to turn Slack on, or neither to leave it off"
        )
    if not _COMMAND_NAME.match(settings.slack_command):
        raise ConfigError(
            f"invalid configuration:\n  SLACK_COMMAND={settings.slack_command!r}: "
            "a slash command is '/' and up to 31 lower-case letters, digits, "
            "'-' or '_', for example /task"
        )
    return True


def _slack_off() -> Response:
    from core.api.problems import problem

    return problem(
        503,
        "Slack is off",
        "Slack commands are not configured on this server: set "
        "SLACK_SIGNING_SECRET and SLACK_BOT_TOKEN to turn them on.",
    )
