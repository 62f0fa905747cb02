"""The bolt App: request verification, the slash command and its replies.

Bolt checks each request's signature over the raw body and rejects requests
signed more than five minutes ago before any listener runs. The command's
``ack`` listener only parses the text, so Slack receives the acknowledgement
well within its three-second limit. Identity look-ups, database work and the
reply run afterwards in a lazy listener, which sends the reply through
``respond``.
"""

from __future__ import annotations

import logging
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from slack_bolt import Ack, App, BoltRequest, Respond
from slack_sdk import WebClient
from slack_sdk.errors import SlackClientError

from bot import actions, dedup, views
from bot.commands import Command, CommandError, parse
from bot.identity import IdentityCache, IdentityUnavailable, SlackIdentity
from core.config import Settings
from core.db import database
from core.errors import NotFound, TaskError

logger = logging.getLogger(__name__)

# Seconds the Web API client waits for Slack before giving up.
WEB_API_TIMEOUT = 10
NO_USER_MESSAGE = (
    "Slack sent this command without a user id, so threadtask cannot tell who "
    "sent it and did nothing. Try again, and if this repeats, ask a Slack admin "
    "to check the app."
)


def build_client(settings: Settings) -> WebClient:
    return WebClient(
        token=settings.slack_bot_token,
        base_url=settings.slack_api_base_url,
        timeout=WEB_API_TIMEOUT,
    )


def build_app(settings: Settings, executor: ThreadPoolExecutor) -> App:
    """Build the bolt App with the slash command registered."""
    # Bolt (1.30, App.__init__) logs "token will be unused" when it gets a
    # client and a token, and it reads SLACK_BOT_TOKEN from the environment
    # when no token is passed. So it gets the token and builds its own client,
    # which is then pointed at the configured Web API.
    bolt = App(
        name="threadtask",
        signing_secret=settings.slack_signing_secret,
        token=settings.slack_bot_token,
        # Checking the token here would call Slack whenever the web app is
        # built, CLI commands included; bolt checks it on the first request.
        token_verification_enabled=False,
        listener_executor=executor,
        logger=logging.getLogger("bot.bolt"),
    )
    # Bolt copies both into the client it builds for each request.
    bolt.client.base_url = settings.slack_api_base_url
    bolt.client.timeout = WEB_API_TIMEOUT

    handler = CommandHandler(settings, IdentityCache())
    bolt.command(settings.slack_command)(
        ack=handler.acknowledge, lazy=[handler.run_and_reply]
    )
    return bolt


def send_reply(respond: Respond, user_id: str, **message: Any) -> None:
    """Post to the command's response_url, logging a failure instead of raising."""
    try:
        response = respond(**message)
    except (OSError, SlackClientError) as exc:
        logger.warning("Slack user %s: reply could not be sent: %s", user_id, exc)
        return
    if response.status_code != 200:
        logger.warning(
            "Slack user %s: reply rejected with HTTP %s: %s",
            user_id,
            response.status_code,
            response.body[:200],
        )


class CommandHandler:
    """The two listeners of the slash command and the state they share."""

    def __init__(self, settings: Settings, identities: IdentityCache) -> None:
        self.settings = settings
        self.identities = identities

    def acknowledge(self, ack: Ack, command: dict) -> None:
        """Reply at once to help and malformed commands, and acknowledge the rest."""
        if not command.get("user_id"):
            logger.warning(
                "Slack command from team %s has no user_id; rejected",
                command.get("team_id", ""),
            )
            text, blocks = views.problem(NO_USER_MESSAGE)
            ack(text=text, blocks=blocks, response_type="ephemeral")
            return

        try:
            parsed = parse(command.get("text", ""))
        except CommandError as exc:
            text, blocks = views.problem(
                exc.message, views.usage(self.settings.slack_command, exc.form)
            )
            ack(text=text, blocks=blocks, response_type="ephemeral")
            return

        if parsed.name == "help":
            text, blocks = views.help_message(self.settings.slack_command)
            ack(text=text, blocks=blocks, response_type="ephemeral")
            return
        ack()

    def run_and_reply(
        self,
        command: dict,
        body: dict,
        request: BoltRequest,
        client: WebClient,
        respond: Respond,
    ) -> None:
        """Run the command after the acknowledgement and send the reply."""
        user_id = command.get("user_id", "")
        if not user_id:
            return
        try:
            parsed = parse(command.get("text", ""))
        except CommandError:
            return
        if parsed.name == "help":
            return

        retry = request.headers.get("x-slack-retry-num", [""])[0]
        if retry:
            logger.info(
                "Slack user %s: retry %s of a %s command", user_id, retry, parsed.name
            )
        try:
            with database.connection_context():
                reply = self.run(parsed, user_id, client, body, request.raw_body)
        except Exception:
            logger.exception("Slack user %s: %s command failed", user_id, parsed.name)
            reply = actions.problem_reply(
                "Something failed on the server, and the error is logged. "
                "Try again later."
            )

        if reply is None:
            return
        send_reply(
            respond,
            user_id,
            text=reply.text,
            blocks=reply.blocks,
            response_type="ephemeral",
        )
        if reply.announcement and self.settings.slack_announce:
            send_reply(
                respond, user_id, text=reply.announcement, response_type="in_channel"
            )

    def run(
        self,
        command: Command,
        user_id: str,
        client: WebClient,
        body: dict,
        raw_body: str,
    ) -> actions.Reply | None:
        """Return the reply to ``command``, or None for an applied retry."""
        try:
            caller = self.identities.lookup(client, user_id)
        except IdentityUnavailable as exc:
            logger.warning(
                "Slack user %s: profile look-up failed: %s", user_id, exc.error
            )
            return actions.problem_reply(
                f"Slack did not return your profile ({exc.error}), so I cannot tell "
                "who you are. Try again in a minute."
            )

        try:
            if command.name == "list":
                return actions.list_tasks(command, caller, self.settings)
            if command.name == "show":
                return actions.show_task(command)
            return self.change(command, caller, client, body, raw_body)
        except (TaskError, CommandError) as exc:
            return self.rejection_reply(exc)

    def change(
        self,
        command: Command,
        caller: SlackIdentity,
        client: WebClient,
        body: dict,
        raw_body: str,
    ) -> actions.Reply | None:
        """Apply a change once, however often Slack sends the request."""
        if not caller.email:
            return actions.problem_reply(
                f"You cannot change tasks from Slack because {caller.reason}, and "
                "every change is made in the name of an email address. Ask a Slack "
                "admin to add a verified email address to your profile."
            )

        key = dedup.request_key(body, raw_body)
        if not dedup.claim(key):
            logger.info(
                "Slack user %s: %s of task %s was applied already; not again",
                caller.user_id,
                command.name,
                command.task_id,
            )
            return None
        try:
            return actions.change_task(command, caller, client, self.identities)
        except Exception:
            # The change was not applied, so a retry may try again.
            dedup.release(key)
            raise

    def rejection_reply(self, exc: TaskError | CommandError) -> actions.Reply:
        """Explain a rejected command.

        The command parsed, so the reply has no usage hint: the core refused
        the change, or the named assignee has no usable email.
        """
        if isinstance(exc, CommandError):
            return actions.problem_reply(exc.message)
        if isinstance(exc, NotFound):
            hint = f"`{self.settings.slack_command} list` shows your tasks."
            return actions.problem_reply(exc.detail, hint)
        return actions.problem_reply(exc.detail)
