"""Clock, queue and sender together, on both queue backends."""

from __future__ import annotations

import shutil
import threading
from datetime import timedelta

import psycopg2
import pytest

from core.models import Delivery
from core.tasks import update_task
from scheduler.clock import tick
from scheduler.worker import build_handler
from tests.conftest import CREATOR, POSTGRES_URL, actor
from tests.reminders.conftest import START, make_task, outbox_messages


@pytest.fixture(params=["sqlite", "rq"])
def queue_kind(request: pytest.FixtureRequest) -> str:
    return request.param


def run_worker(queue, settings, outbox) -> int:
    handler = build_handler(settings, transport=outbox)
    return queue.work(handler, burst=True, stop=threading.Event())


def test_two_ticks_while_sender_down_send_one(
    db, settings, outbox, make_queue, queue_kind
):
    task = make_task(criticality="critical")
    clock_queue = make_queue(queue_kind, consumer=False)
    tick(clock_queue, START + timedelta(minutes=30))
    tick(clock_queue, START + timedelta(minutes=60))

    run_worker(make_queue(queue_kind), settings, outbox)

    emails = outbox_messages(outbox)
    assert len(emails) == 2  # the assignment notice and one reminder
    statuses = [d.status for d in Delivery.select().where(Delivery.task == task.id)]
    assert sorted(statuses) == ["sent", "sent"]


def test_two_clocks_at_once_send_one(db, settings, outbox, make_queue, queue_kind):
    task = make_task(criticality="high")
    first = make_queue(queue_kind, consumer=False)
    second = make_queue(queue_kind, consumer=False)
    now = START + timedelta(hours=1)

    tick(first, now)
    tick(second, now)
    run_worker(make_queue(queue_kind), settings, outbox)

    reminders = Delivery.select().where(
        (Delivery.task == task.id) & (Delivery.kind == "open_reminder")
    )
    assert [d.status for d in reminders] == ["sent"]
    assert len(outbox_messages(outbox)) == 2  # the assignment notice and one reminder


def test_duplicate_messages_send_once(db, settings, outbox, make_queue):
    task = make_task(criticality="high")
    queue = make_queue("sqlite")
    tick(queue, START + timedelta(hours=1))
    reminder = Delivery.get(
        (Delivery.task == task.id) & (Delivery.kind == "open_reminder")
    )
    # Two clocks racing between their check and their put can leave two
    # messages for one delivery; the claim on the row lets one through.
    queue._queue.put({"delivery_id": reminder.id})

    handled = run_worker(queue, settings, outbox)

    assert handled == 3
    assert len(outbox_messages(outbox)) == 2
    assert Delivery.get_by_id(reminder.id).attempts == 1


def test_lost_message_is_put_back_by_next_tick(
    db, settings, outbox, make_queue, queue_kind, tmp_path
):
    task = make_task(criticality="high")
    queue = make_queue(queue_kind, consumer=False)
    tick(queue, START + timedelta(hours=1))
    if queue_kind == "sqlite":
        queue.close()
        shutil.rmtree(tmp_path / "queue")
    else:
        queue.queue.empty()

    tick(make_queue(queue_kind, consumer=False), START + timedelta(hours=1, minutes=30))
    run_worker(make_queue(queue_kind), settings, outbox)

    reminder = Delivery.get(
        (Delivery.task == task.id) & (Delivery.kind == "open_reminder")
    )
    assert reminder.status == "sent"
    assert len(outbox_messages(outbox)) == 2


def test_task_closed_in_queue_sends_no_reminder(
    db, settings, outbox, make_queue, queue_kind
):
    task = make_task(criticality="high", assigned_to="")
    tick(make_queue(queue_kind, consumer=False), START + timedelta(hours=1))
    update_task(
        actor(CREATOR), task.id, {"status": "closed"}, now=START + timedelta(hours=1)
    )

    run_worker(make_queue(queue_kind), settings, outbox)

    assert outbox_messages(outbox) == []
    [reminder] = Delivery.select().where(Delivery.task == task.id)
    assert reminder.status == "skipped"


def test_second_clock_leaves_fresh_queued_alone(
    db, settings, outbox, make_queue, queue_kind, caplog
):
    """A delivery another clock just marked queued is not taken for lost."""
    task = make_task(criticality="high")
    moment = START + timedelta(hours=1)
    # Another clock has marked the notice queued but not put its message yet.
    notice = Delivery.get((Delivery.task == task.id) & (Delivery.kind == "assigned"))
    Delivery.update(status="queued", updated_at=moment).where(
        Delivery.id == notice.id
    ).execute()

    put = tick(make_queue(queue_kind, consumer=False), moment)

    assert "lost" not in caplog.text
    assert put == 1  # only the new reminder, not the notice
    later = tick(make_queue(queue_kind, consumer=False), moment + timedelta(minutes=30))
    assert later == 1  # the notice, now overdue for its message
    assert "lost" in caplog.text


def test_worker_survives_dropped_connection(db, settings, outbox, backend):
    if backend != "postgres":
        pytest.skip("only a database server can drop a client's connection")
    handler = build_handler(settings, transport=outbox)
    notices = []
    for _ in range(2):
        task = make_task(criticality="high")
        [notice] = Delivery.select().where(Delivery.task == task.id)
        Delivery.update(status="queued").where(Delivery.id == notice.id).execute()
        notices.append(notice.id)
    assert handler(notices[0]) == "sent"

    # Another session ends the worker's connection, as an admin or a
    # server restart would.
    pid = db.execute_sql("SELECT pg_backend_pid()").fetchone()[0]
    admin = psycopg2.connect(POSTGRES_URL)
    admin.autocommit = True
    with admin.cursor() as cursor:
        cursor.execute("SELECT pg_terminate_backend(%s)", (pid,))
    admin.close()

    assert handler(notices[1]) == "sent"
    assert Delivery.get_by_id(notices[1]).status == "sent"
