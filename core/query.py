"""The task query language of ``GET /tasks?q=`` and ``/task list``.

    (status:open OR status:fixed) AND NOT criticality:low
    assigned_to:me status:open,fixed        (a space means AND)
    subject:"printer jam"                   (subject matches a substring)

An expression is parsed with lark and compiled into one Peewee expression, so
the database does all the filtering.
"""

from __future__ import annotations

import functools
import operator
from functools import reduce
from typing import Any

import peewee as pw
from lark import Lark, Token, Transformer, v_args
from lark.exceptions import (
    UnexpectedCharacters,
    UnexpectedEOF,
    UnexpectedInput,
    VisitError,
)

from core.config import CRITICALITIES, STATUSES
from core.emails import normalize_email
from core.models import Task

MAX_QUERY_LENGTH = 2000
MAX_TASK_ID = 2**63 - 1

GRAMMAR = r"""
    ?start: or_expr
    ?or_expr: and_expr (_OR and_expr)*
    ?and_expr: not_expr (_AND? not_expr)*
    ?not_expr: _NOT not_expr -> negation
             | atom
    ?atom: term
         | "(" or_expr ")"
    term: FIELD ":" value ("," value)*
    value: WORD | ESCAPED_STRING

    _OR.2: /(?i:OR)(?![^\s()])/
    _AND.2: /(?i:AND)(?![^\s()])/
    _NOT.2: /(?i:NOT)(?![^\s()])/
    FIELD: /[A-Za-z_]+/
    WORD: /[^\s(),":]+/

    %import common.ESCAPED_STRING
    %import common.WS
    %ignore WS
"""

_parser = Lark(GRAMMAR, parser="lalr", maybe_placeholders=False)

FIELDS = (
    "id",
    "status",
    "criticality",
    "assigned_to",
    "creator_email",
    "thread_id",
    "subject",
    "latest_message_id",
)


class QueryError(ValueError):
    """A malformed query; ``position`` is the 0-based offset of the fault."""

    def __init__(self, message: str, position: int) -> None:
        super().__init__(message)
        self.message = message
        self.position = position


def compile_query(text: str, *, me: str | None = None) -> pw.Expression:
    """Compile a query into a Peewee expression over Task.

    ``me`` is the caller's address, which ``assigned_to:me`` and
    ``creator_email:me`` stand for. Results are cached, because clients
    repeat the same few queries and parsing costs more than running them.
    """
    return _compile_cached(text, me)


@functools.lru_cache(maxsize=512)
def _compile_cached(text: str, me: str | None) -> pw.Expression:
    if len(text) > MAX_QUERY_LENGTH:
        raise QueryError(
            f"the query is {len(text)} characters long; the limit is {MAX_QUERY_LENGTH}",
            MAX_QUERY_LENGTH,
        )
    if not text.strip():
        raise QueryError("the query is empty; write for example status:open", 0)
    try:
        tree = _parser.parse(text)
    except UnexpectedInput as exc:
        raise _syntax_error(text, exc) from None
    try:
        return _Compiler(me).transform(tree)
    except VisitError as exc:
        if isinstance(exc.orig_exc, QueryError):
            raise exc.orig_exc from None
        raise


def compile_filter(field: str, raw: str, *, me: str | None = None) -> pw.Expression:
    """Compile a plain parameter such as ``status=open,fixed`` or ``status=!closed``."""
    negate = raw.startswith("!")
    values = [item.strip() for item in raw.removeprefix("!").split(",")]
    compiler = _Compiler(me)
    expression = compiler.condition(field, values, position=0)
    return ~expression if negate else expression


def _syntax_error(text: str, exc: UnexpectedInput) -> QueryError:
    if (
        isinstance(exc, UnexpectedEOF)
        or getattr(exc, "token", None) == "$END"
        or (isinstance(getattr(exc, "token", None), Token) and exc.token.type == "$END")
    ):
        opened = text.count("(") - text.count(")")
        hint = "a ')' is missing" if opened > 0 else "an operand is missing"
        return QueryError(
            f"the query ends too early at position {len(text)}: {hint}", len(text)
        )
    position = getattr(exc, "pos_in_stream", None) or 0
    if isinstance(exc, UnexpectedCharacters):
        char = text[position] if position < len(text) else ""
        return QueryError(
            f"unexpected character {char!r} at position {position}; "
            "terms look like field:value, joined by AND, OR, NOT and parentheses",
            position,
        )
    token = getattr(exc, "token", "")
    if str(token) == ")":
        return QueryError(f"unbalanced ')' at position {position}", position)
    return QueryError(
        f"unexpected {str(token)!r} at position {position}; "
        "terms look like field:value, joined by AND, OR, NOT and parentheses",
        position,
    )


@v_args(inline=True)
class _Compiler(Transformer):
    def __init__(self, me: str | None) -> None:
        super().__init__()
        self.me = me

    def or_expr(self, *parts: pw.Expression) -> pw.Expression:
        return reduce(operator.or_, parts)

    def and_expr(self, *parts: pw.Expression) -> pw.Expression:
        return reduce(operator.and_, parts)

    def negation(self, part: pw.Expression) -> pw.Expression:
        return ~part

    def value(self, token: Token) -> Token:
        if token.type == "ESCAPED_STRING":
            return Token(
                "STRING", token[1:-1].replace('\\"', '"'), start_pos=token.start_pos
            )
        return token

    def term(self, field: Token, *values: Token) -> pw.Expression:
        return self.condition(
            str(field),
            [str(v) for v in values],
            position=field.start_pos or 0,
            value_positions=[v.start_pos or 0 for v in values],
        )

    def condition(
        self,
        field: str,
        values: list[str],
        *,
        position: int,
        value_positions: list[int] | None = None,
    ) -> pw.Expression:
        name = field.lower()
        if name not in FIELDS:
            raise QueryError(
                f"unknown field {field!r} at position {position}; "
                f"use one of {', '.join(FIELDS)}",
                position,
            )
        column = getattr(Task, name)
        positions = value_positions or [position] * len(values)
        cleaned = [
            self._value(name, v, at) for v, at in zip(values, positions, strict=True)
        ]
        if name == "subject":
            return reduce(operator.or_, [column.contains(v) for v in cleaned])
        if len(cleaned) == 1:
            return column == cleaned[0]
        return column.in_(cleaned)

    def _value(self, name: str, value: str, position: int) -> Any:
        lowered = value.strip().lower()
        if name == "status" and lowered not in STATUSES:
            raise QueryError(
                f"status {value!r} at position {position} is invalid; use one of "
                f"{', '.join(STATUSES)}",
                position,
            )
        if name == "criticality" and lowered not in CRITICALITIES:
            raise QueryError(
                f"criticality {value!r} at position {position} is invalid; use one of "
                f"{', '.join(CRITICALITIES)}",
                position,
            )
        if name in ("status", "criticality"):
            return lowered
        if name == "id":
            if not lowered.isdigit() or int(lowered) > MAX_TASK_ID:
                raise QueryError(
                    f"id {value!r} at position {position} is invalid; use a task number",
                    position,
                )
            return int(lowered)
        if name in ("assigned_to", "creator_email"):
            if lowered == "me" and self.me:
                return self.me
            try:
                return normalize_email(value)
            except ValueError:
                raise QueryError(
                    f"{name} {value!r} at position {position} is not an email address",
                    position,
                ) from None
        return value
