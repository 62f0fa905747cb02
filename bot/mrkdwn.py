"""Convert between untrusted text and Slack's mrkdwn markup.

Slack escapes ``&``, ``<`` and ``>`` as HTML entities in the text it sends.
It expects the same three entities in the text it receives, and no others.
https://api.slack.com/reference/surfaces/formatting#escaping
"""

from __future__ import annotations

import re

ENTITIES = {"&": "&amp;", "<": "&lt;", ">": "&gt;"}
_ENTITY = re.compile(r"&(amp|lt|gt);")
_DECODED = {"amp": "&", "lt": "<", "gt": ">"}

# mrkdwn has no escape for its formatting characters, so each one in
# untrusted text gets a zero-width space on both sides. The character is then
# no longer next to the word it would make bold, italic, struck or code.
# NOTE: not yet checked in a live Slack client; only the syntax is documented.
ZERO_WIDTH_SPACE = "\u200b"
FORMATTING = frozenset("*_~`")
# Inside inline code Slack applies no formatting, and only a backtick could
# end the span early, so a backtick is shown as this look-alike letter.
GRAVE_LOOKALIKE = "\u02cb"
ELLIPSIS = "…"


def decode(text: str) -> str:
    """Decode the three entities Slack uses in text it sends, in one pass.

    One pass keeps ``&amp;lt;`` as the literal text ``&lt;``.
    """
    return _ENTITY.sub(lambda match: _DECODED[match.group(1)], text)


def plain(text: str, limit: int | None = None) -> str:
    """Return ``text`` as one line of mrkdwn that Slack shows as written.

    ``limit`` counts the characters of the result, entities and zero-width
    spaces included, so a cut never splits an entity; a cut text ends in "…".
    Line breaks become spaces, because a line that starts with ``>`` would
    be shown as a quote.
    """
    return _cut([_render(char) for char in text], limit)


def code(text: str, limit: int | None = None) -> str:
    """Return ``text`` as inline code, its content cut like ``plain``."""
    return f"`{_cut([_render_code(char) for char in text], limit)}`"


def _cut(pieces: list[str], limit: int | None) -> str:
    rendered = "".join(pieces)
    if limit is None or len(rendered) <= limit:
        return rendered

    kept_pieces: list[str] = []
    size = 0
    for piece in pieces:
        if size + len(piece) > limit - len(ELLIPSIS):
            break
        kept_pieces.append(piece)
        size += len(piece)
    return "".join(kept_pieces) + ELLIPSIS


def _render(char: str) -> str:
    if char in FORMATTING:
        return f"{ZERO_WIDTH_SPACE}{char}{ZERO_WIDTH_SPACE}"
    return _render_code(char)


def _render_code(char: str) -> str:
    if char in ENTITIES:
        return ENTITIES[char]
    if char == "`":
        return GRAVE_LOOKALIKE
    if char.isspace():
        return " "
    return char
