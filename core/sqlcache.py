"""Reuse the SQL text of hot queries instead of rebuilding it per request.

Peewee renders a query's SQL on every execution, which costs more than the
query itself for one-row lookups on SQLite. A cached query is built once per
database with placeholder values and then run with ``Model.raw`` or
``execute_sql``.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable, Sequence
from typing import Any

import peewee as pw

from core.db import database

# Keyed weakly on the database object itself: an id() could be reused by a
# later database with another placeholder style once the first is collected.
_cache: weakref.WeakKeyDictionary[pw.Database, dict[str, tuple[str, int]]] = (
    weakref.WeakKeyDictionary()
)


def cached_select(
    model: type[pw.Model],
    key: str,
    build: Callable[[], pw.ModelSelect],
    params: Sequence[Any],
) -> pw.ModelRaw:
    """Run the query that ``build`` returns, with ``params`` as its values.

    ``params`` must give a value for each parameter of the built query, in
    the order its SQL uses them (LIMIT values count too).
    """
    return model.raw(_sql(key, build, params), *params)


def cached_fetchone(
    key: str, build: Callable[[], pw.Query], params: Sequence[Any]
) -> tuple | None:
    """Run the query that ``build`` returns and return its first row as a tuple."""
    return database.execute_sql(_sql(key, build, params), list(params)).fetchone()


def cached_execute(
    key: str, build: Callable[[], pw.Query], params: Sequence[Any]
) -> None:
    """Execute the statement that ``build`` returns, with ``params`` as its values.

    Values go to the driver as they are, so ``params`` may hold only what it
    accepts: strings, numbers, None and datetimes.
    """
    database.execute_sql(_sql(key, build, params), list(params))


def _sql(key: str, build: Callable[[], pw.Query], params: Sequence[Any]) -> str:
    queries = _cache.setdefault(database.obj, {})
    cached = queries.get(key)
    if cached is None:
        sql, template = build().sql()
        cached = (sql, len(template))
        queries[key] = cached
    sql, count = cached
    if len(params) != count:
        raise ValueError(f"query {key!r} takes {count} parameters, not {len(params)}")
    return sql
