"""Parsing of command text and Slack profiles, without Slack or a database."""

from __future__ import annotations

import pytest

from bot.commands import Assignee, Command, CommandError, parse
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
