"""Reuse the SQL text of hot queries instead of rebuilding it per request.

Peewee renders a query's SQL on every execution, which costs more than the
query itself for one-row lookups on SQLite. A cached query is built once per
database with placeholder values and then run with ``Model.raw``.
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
    queries = _cache.setdefault(database.obj, {})
    cached = queries.get(key)
    if cached is None:
        sql, template = build().sql()
        cached = (sql, len(template))
        queries[key] = cached
    sql, count = cached
    if len(params) != count:
        raise ValueError(f"query {key!r} takes {count} parameters, not {len(params)}")
    return model.raw(sql, *params)
