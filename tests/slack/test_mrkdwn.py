"""Untrusted text turned into mrkdwn that Slack shows as written."""

from __future__ import annotations

import re

import pytest

from bot.mrkdwn import ZERO_WIDTH_SPACE, code, decode, plain

# An "&" that does not start one of Slack's three entities: a split entity.
BROKEN_ENTITY = re.compile(r"&(?!amp;|lt;|gt;)")


def test_plain_escapes_markup():
    assert plain("<!channel> & <https://evil.example|x>") == (
        "&lt;!channel&gt; &amp; &lt;https://evil.example|x&gt;"
    )


@pytest.mark.parametrize("char", ["*", "_", "~", "`"])
def test_plain_separates_formatting_characters(char):
    assert plain(f"{char}word{char}") == (
        f"{ZERO_WIDTH_SPACE}{char}{ZERO_WIDTH_SPACE}word"
        f"{ZERO_WIDTH_SPACE}{char}{ZERO_WIDTH_SPACE}"
    )


def test_plain_joins_lines():
    # A line that starts with ">" would be shown as a quote.
    assert plain("first\n> second\r\nthird") == "first &gt; second  third"


@pytest.mark.parametrize("limit", range(1, 40))
@pytest.mark.parametrize("text", ["<" * 30, "a&b" * 10, "*_" * 20, "x" * 50])
def test_plain_cut_fits_limit_and_keeps_entities(text, limit):
    shown = plain(text, limit)

    assert len(shown) <= limit
    assert not BROKEN_ENTITY.search(shown)
    assert shown.endswith("…") or shown == plain(text)


def test_plain_keeps_text_within_limit():
    assert plain("<<", 8) == "&lt;&lt;"
    assert plain("<<<", 8) == "&lt;…"


def test_code_replaces_backticks_only():
    assert code("a_b `x` <c>") == "`a_b ˋxˋ &lt;c&gt;`"
    assert code("<" * 10, 9) == "`&lt;&lt;…`"


@pytest.mark.parametrize(
    ("sent", "meant"),
    [
        ("R&amp;D", "R&D"),
        ("&lt;b&gt;", "<b>"),
        ("&amp;lt;", "&lt;"),
        ("&quot;&#39;", "&quot;&#39;"),
        ("<@U123|name>", "<@U123|name>"),
    ],
)
def test_decode_only_slack_entities(sent, meant):
    assert decode(sent) == meant
