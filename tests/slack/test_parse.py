"""Parsing of command text and Slack profiles, without Slack or a database."""

from __future__ import annotations

import pytest

from bot.commands import Assignee, Command, CommandError, parse, preview
from bot.identity import IdentityCache, identity_from_user
from tests.slack.conftest import slack_user


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", Command("help")),
        ("  Help  ", Command("help")),
        ("list", Command("list")),
        (
            "LIST  status:open   criticality:high ",
            Command("list", query="status:open   criticality:high"),
        ),
        ("show 7", Command("show", task_id=7)),
        ("show #7", Command("show", task_id=7)),
        ("fixed 12", Command("fixed", task_id=12)),
        ("open 12", Command("open", task_id=12)),
        ("close 12", Command("close", task_id=12)),
        ("crit 3 Critical", Command("crit", task_id=3, level="critical")),
        (
            "assign 3 me",
            Command("assign", task_id=3, assignee=Assignee(is_caller=True)),
        ),
        (
            "assign 3 <@W0ABC|ann>",
            Command("assign", task_id=3, assignee=Assignee(slack_user_id="W0ABC")),
        ),
        (
            "assign 3 <mailto:Ann@Example.com|Ann@Example.com>",
            Command("assign", task_id=3, assignee=Assignee(email="ann@example.com")),
        ),
        (
            "assign 3 ann@example.com",
            Command("assign", task_id=3, assignee=Assignee(email="ann@example.com")),
        ),
    ],
)
def test_parse_valid(text, expected):
    assert parse(text) == expected


@pytest.mark.parametrize(
    ("text", "form"),
    [
        ("delete 3", None),
        ("show", "show ID"),
        ("show 99999999999999999999", "show ID"),
        ("crit 3 severe", "crit ID LEVEL"),
        ("assign 3 <#C123|general>", "assign ID @user-or-email"),
    ],
)
def test_parse_malformed(text, form):
    with pytest.raises(CommandError) as caught:
        parse(text)

    assert caught.value.form == form
    assert caught.value.message.endswith(".")


def test_identity_requires_email():
    assert identity_from_user("U1", slack_user("U1", "Ann@Example.com")).email == (
        "ann@example.com"
    )
    assert identity_from_user("U1", slack_user("U1", None)).email == ""
    assert identity_from_user("U1", slack_user("U1", "")).email == ""


def test_identity_rejects_unconfirmed_email():
    user = slack_user("U1", "ann@example.com", is_email_confirmed=False)

    identity = identity_from_user("U1", user)

    assert identity.email == ""
    assert "not confirmed" in identity.reason


def test_identity_rejects_deactivated_user():
    identity = identity_from_user(
        "U1", slack_user("U1", "ann@example.com", deleted=True)
    )

    assert identity.email == ""


def test_identity_cache_expires(slack_api):
    from slack_sdk import WebClient

    now = [1000.0]
    cache = IdentityCache(ttl_seconds=60, clock=lambda: now[0])
    client = WebClient(token="xoxb-test", base_url=f"{slack_api.url}/api/")

    cache.lookup(client, "U0ALEX")
    now[0] += 59
    cache.lookup(client, "U0ALEX")
    now[0] += 1
    cache.lookup(client, "U0ALEX")

    assert len(slack_api.calls("/api/users.info")) == 2


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('list subject:"R&amp;D"', Command("list", query='subject:"R&D"')),
        ("list subject:&lt;b&gt;", Command("list", query="subject:<b>")),
        # One pass: an escaped entity stays the literal text of that entity.
        ("list subject:&amp;lt;", Command("list", query="subject:&lt;")),
        (
            "assign 4 o'brien&amp;co@example.com",
            Command(
                "assign", task_id=4, assignee=Assignee(email="o'brien&co@example.com")
            ),
        ),
        (
            "assign 4 <mailto:a&amp;b@example.com|a&amp;b@example.com>",
            Command("assign", task_id=4, assignee=Assignee(email="a&b@example.com")),
        ),
        (
            "assign 4 <@U0ALEX|o&amp;b>",
            Command("assign", task_id=4, assignee=Assignee(slack_user_id="U0ALEX")),
        ),
        ("crit 4 HIGH", Command("crit", task_id=4, level="high")),
    ],
)
def test_parse_decodes_slack_entities(text, expected):
    assert parse(text) == expected


def test_typed_mention_markup_is_not_mention():
    # Slack sends a real mention as <@U...>; text typed as "<@U0ALEX>" arrives
    # escaped and is an address that does not parse.
    with pytest.raises(CommandError) as caught:
        parse("assign 4 &lt;@U0ALEX&gt;")

    assert "'<@U0ALEX>' is neither a Slack mention" in caught.value.message


@pytest.mark.parametrize("word", ["١", "٤٢", "７", "४२", "1٢"])
def test_task_id_accepts_only_ascii_digits(word):
    with pytest.raises(CommandError) as caught:
        parse(f"fixed {word}")

    assert caught.value.message == (
        f"{word!r} is not a task id; an id is a positive number such as 42."
    )


@pytest.mark.parametrize(
    ("text", "ending"),
    [
        ("show", "but 0 arguments were given."),
        ("show 1 2", "but 2 arguments were given."),
        ("crit 1", "but 1 argument was given."),
        ("assign", "but 0 arguments were given."),
    ],
)
def test_argument_count_pluralised(text, ending):
    with pytest.raises(CommandError) as caught:
        parse(text)

    assert caught.value.message.endswith(ending)


@pytest.mark.parametrize(
    "text",
    [
        "x" * 3500,
        "show " + "9" * 3500,
        "crit 1 " + "h" * 3500,
        "assign 1 " + "q" * 3500,
        "assign 1 <@U" + "A" * 3500 + ">",
    ],
)
def test_error_quotes_short_preview(text):
    with pytest.raises(CommandError) as caught:
        parse(text)

    assert len(caught.value.message) < 200


def test_preview_cuts_long_values():
    assert preview("abc") == "'abc'"
    assert preview("z" * 41) == "'" + "z" * 39 + "…'"
    assert preview("z" * 40) == "'" + "z" * 40 + "'"
