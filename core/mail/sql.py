"""Reuse the SQL text of the mail reader's hot lookups.

Peewee renders SQL on every execution, which costs more than a one-row
lookup itself on SQLite. The text is cached per database object, held
weakly: a key built from ``id()`` could be reused by a later database of
another kind (tests open SQLite and PostgreSQL in one process), and the
placeholders of one would then be sent to the other.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable, Sequence
from typing import Any

import peewee as pw

from core.db import database

_cache: weakref.WeakKeyDictionary[pw.Database, dict[str, str]] = (
    weakref.WeakKeyDictionary()
)


def cached_raw(
    model: type[pw.Model],
    key: str,
    build: Callable[[], pw.ModelSelect],
    params: Sequence[Any],
) -> pw.ModelRaw:
    """Run the query that ``build`` returns, with ``params`` as its values.

    ``params`` gives a value for each placeholder of the built query in the
    order its SQL uses them, LIMIT values included.
    """
    per_database = _cache.setdefault(database.obj, {})
    sql = per_database.get(key)
    if sql is None:
        sql, template = build().sql()
        if len(template) != len(params):
            raise ValueError(
                f"query {key!r} takes {len(template)} parameters, not {len(params)}"
            )
        per_database[key] = sql
    return model.raw(sql, *params)


def cached_execute(
    key: str, build: Callable[[], pw.Query], params: Sequence[Any]
) -> None:
    """Execute the statement that ``build`` returns, with ``params`` as its values.

    Values are sent as they are, so ``params`` may contain only what the
    database driver accepts: strings, numbers, None and datetimes.
    """
    per_database = _cache.setdefault(database.obj, {})
    sql = per_database.get(key)
    if sql is None:
        sql, template = build().sql()
        if len(template) != len(params):
            raise ValueError(
                f"statement {key!r} takes {len(template)} parameters, not {len(params)}"
            )
        per_database[key] = sql
    database.execute_sql(sql, list(params))
