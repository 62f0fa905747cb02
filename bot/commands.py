"""Parse the text of a slash command into a Command, or explain the mistake.

Parsing needs neither the database nor Slack, so a mistyped command is
reported in the acknowledgement itself.

Slack sends ``&``, ``<`` and ``>`` typed by the user as ``&amp;``, ``&lt;``
and ``&gt;``, and a mention or an address as ``<...>`` markup. Each word is
matched against that markup first and decoded otherwise, so ``R&amp;D`` is
read as ``R&D`` while only Slack's own markup counts as a mention.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from bot.mrkdwn import decode
from core.config import CRITICALITIES
from core.emails import normalize_email

# With "Escape channels, users, and links" on (``should_escape`` in the app
# manifest), Slack sends a mention as <@U123|name> and an address as
# <mailto:a@example.com|a@example.com>.
# https://api.slack.com/interactivity/slash-commands#creating_commands
_MENTION = re.compile(r"^<@([UW][A-Z0-9]{1,30})(?:\|[^>]*)?>$")
_MAILTO = re.compile(r"^<mailto:([^|>]+)(?:\|[^>]*)?>$")
# Only ASCII digits: int() also reads other scripts' digits, such as "١".
_TASK_ID = re.compile(r"^#?([0-9]{1,18})$")
# Characters of a user's word shown back in an error message.
PREVIEW_CHARS = 40

# Each command with the form of its arguments, in the order help lists them.
FORMS = {
    "help": "help",
    "list": "list [QUERY]",
    "show": "show ID",
    "fixed": "fixed ID",
    "open": "open ID",
    "close": "close ID",
    "crit": "crit ID LEVEL",
    "assign": "assign ID @user-or-email",
}
STATUS_COMMANDS = {"fixed": "fixed", "open": "open", "close": "closed"}
ACTION_COMMANDS = (*STATUS_COMMANDS, "crit", "assign")


class CommandError(ValueError):
    """The command text is malformed; ``form`` is the correct form, if known."""

    def __init__(self, message: str, form: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.form = form


@dataclass(frozen=True)
class Assignee:
    """The person ``assign`` names: a Slack user id, an email address, or the caller."""

    slack_user_id: str = ""
    email: str = ""
    is_caller: bool = False


@dataclass(frozen=True)
class Command:
    """One parsed command: its name and the arguments it takes."""

    name: str
    task_id: int | None = None
    query: str = ""
    level: str = ""
    assignee: Assignee | None = None

    @property
    def changes_task(self) -> bool:
        return self.name in ACTION_COMMANDS


def parse(text: str) -> Command:
    """Parse the text after the command name; raise CommandError if malformed."""
    words = text.split()
    if not words:
        return Command("help")

    name = decode(words[0]).lower()
    args = words[1:]
    if name not in FORMS:
        raise CommandError(f"{preview(decode(words[0]))} is not a command.")

    if name == "help":
        return Command("help")
    if name == "list":
        query = text.strip()[len(words[0]) :].strip()
        return Command("list", query=decode(query))

    expected = 2 if name in ("crit", "assign") else 1
    if len(args) != expected:
        raise CommandError(_count_message(name, expected, len(args)), FORMS[name])
    task_id = _task_id(decode(args[0]), name)

    if name == "crit":
        return Command(name, task_id=task_id, level=_level(decode(args[1])))
    if name == "assign":
        return Command(name, task_id=task_id, assignee=_assignee(args[1]))
    return Command(name, task_id=task_id)


def preview(value: str) -> str:
    """Quote a user's value for a message, cut to PREVIEW_CHARS characters."""
    if len(value) > PREVIEW_CHARS:
        value = value[: PREVIEW_CHARS - 1] + "…"
    return repr(value)


def _count_message(name: str, expected: int, received: int) -> str:
    arguments = "a task id" if expected == 1 else "a task id and one more argument"
    given = "1 argument was" if received == 1 else f"{received} arguments were"
    return f"{name} takes {arguments}, but {given} given."


def _task_id(word: str, name: str) -> int:
    match = _TASK_ID.match(word)
    if not match or int(match.group(1)) == 0:
        raise CommandError(
            f"{preview(word)} is not a task id; an id is a positive number such as 42.",
            FORMS[name],
        )
    return int(match.group(1))


def _level(word: str) -> str:
    level = word.lower()
    if level not in CRITICALITIES:
        raise CommandError(
            f"{preview(word)} is not a criticality; use one of "
            f"{', '.join(CRITICALITIES)}.",
            FORMS["crit"],
        )
    return level


def _assignee(word: str) -> Assignee:
    """Read a mention or an address from the word as Slack sent it."""
    mention = _MENTION.match(word)
    if mention:
        return Assignee(slack_user_id=mention.group(1))

    mailto = _MAILTO.match(word)
    address = decode(mailto.group(1) if mailto else word)
    if address.lower() == "me":
        return Assignee(is_caller=True)
    try:
        email = normalize_email(address)
    except ValueError:
        email = ""
    if not email:
        raise CommandError(
            f"{preview(address)} is neither a Slack mention nor an email address; "
            "mention the person with @ so Slack completes the name, or give "
            "their email.",
            FORMS["assign"],
        )
    return Assignee(email=email)
