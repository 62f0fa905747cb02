"""core.sqlcache: cached SQL text gives the same rows as a fresh query."""

import pytest

from core import tasks
from core.models import Task
from core.sqlcache import cached_select
from tests.conftest import actor


def by_thread():
    return Task.select().where(Task.thread_id == "")


def test_cached_query_reused(db):
    tasks.create_task(actor(), {"thread_id": "a"})
    tasks.create_task(actor(), {"thread_id": "b"})

    first = [t.thread_id for t in cached_select(Task, "test-thread", by_thread, ["a"])]
    second = [t.thread_id for t in cached_select(Task, "test-thread", by_thread, ["b"])]

    assert first == ["a"]
    assert second == ["b"]


def test_wrong_parameter_count(db):
    with pytest.raises(ValueError, match="takes 1 parameters"):
        cached_select(Task, "test-thread-count", by_thread, ["a", "b"])


def test_optimize_database_collects_statistics(db, backend):
    from core.db import database, optimize_database

    for number in range(20):
        tasks.create_task(actor(), {"thread_id": f"t{number}"})

    optimize_database()

    if backend == "sqlite":
        rows = database.execute_sql("SELECT tbl FROM sqlite_stat1").fetchall()
        assert ("task",) in rows


def test_compiled_query_cached():
    from core.query import compile_query

    first = compile_query("status:open", me="a@example.com")
    second = compile_query("status:open", me="a@example.com")

    assert first is second
