"""Every query of the tick and the sender finds its rows through an index."""

from __future__ import annotations

from datetime import datetime

import peewee as pw
import pytest

from core.config import get_settings
from core.models import Delivery, MailMessage, Task
from core.reminders import (
    in_flight_query,
    marked_tasks_query,
    pending_due_query,
    tick_statement,
)

NOW = datetime(2026, 3, 2, 9, 0, 0)


def tick():
    return tick_statement(NOW, get_settings())


def marked_tasks():
    return marked_tasks_query(NOW, 1000).sql()


def dispatch():
    return pending_due_query(NOW, 1000).sql()


def in_flight():
    return in_flight_query().sql()


def by_message_id():
    return (
        Delivery.select(Delivery.task)
        .where(Delivery.message_id.in_(["<a@mail.example.com>", "<b@example.com>"]))
        .sql()
    )


def by_task():
    return Delivery.select().where(Delivery.task == 1).order_by(Delivery.id).sql()


def thread_root():
    return (
        MailMessage.select(MailMessage.message_id)
        .where((MailMessage.task == 1) & (MailMessage.direction == "in"))
        .order_by(MailMessage.id)
        .limit(1)
        .sql()
    )


QUERIES = [tick, marked_tasks, dispatch, in_flight, by_message_id, by_task]


def plan(db, sql: str, params: list) -> list[str]:
    if isinstance(db.obj, pw.SqliteDatabase):
        rows = db.execute_sql("EXPLAIN QUERY PLAN " + sql, params).fetchall()
        return [row[-1] for row in rows]
    # With no rows PostgreSQL prefers a sequential scan whatever the indexes.
    db.execute_sql("SET LOCAL enable_seqscan = off")
    return [row[0] for row in db.execute_sql("EXPLAIN " + sql, params).fetchall()]


@pytest.mark.parametrize("query", QUERIES + [thread_root], ids=lambda q: q.__name__)
def test_query_uses_an_index(db, query):
    with db.atomic():
        steps = plan(db, *query())

    full_scans = [
        step for step in steps if step.startswith("SCAN ") or "Seq Scan" in step
    ]
    assert full_scans == [], steps


def test_task_rows_are_found_by_key(db):
    with db.atomic():
        steps = plan(db, *tick())

    assert any("task_next_reminder_at" in step for step in steps), steps
    if isinstance(db.obj, pw.SqliteDatabase):
        assert any("PRIMARY KEY" in step for step in steps), steps
    assert Task.select().count() == 0


def test_marked_tasks_use_partial_index(db):
    with db.atomic():
        steps = plan(db, *marked_tasks())

    assert any("task_reminder_due_at" in step for step in steps), steps
