"""Benchmark the reminder tick and the delivery of reminders to the outbox.

Everything runs on a fresh SQLite database and queue folder in a temporary
directory, and each measurement sits beside its floor from the same run:

1. Tick: a table of open tasks (default 100,000) of which 1,000 are due.
   The bare SQL query that selects the due rows is timed beside
   ``enqueue_due_reminders`` (select, advance the schedule and mark each
   task as owing a reminder, all in one UPDATE), and beside that UPDATE run
   as raw SQL, which shows how much of the tick is the database's write
   work. The clock's next step, which turns the marks into queued delivery
   rows, is timed too. Each is repeated and the median is reported; between
   runs the due tasks are made due again and their deliveries deleted.
   The table then grows (default to 1,000,000 tasks, still 1,000 due) and
   the tick runs again. The peak Python memory of each tick (tracemalloc)
   shows whether memory stays flat as the table grows.
2. Delivery: N reminders (default 2,000) go through put, dequeue, reload,
   render, write to the outbox, record and ack, beside a bare persist-queue
   put/get/ack loop of the same count.

    python -m bench.reminders
    python -m bench.reminders --tasks 20000 --grow-to 100000 --deliveries 500
"""

from __future__ import annotations

import argparse
import logging
import shutil
import statistics
import tempfile
import threading
import time
import tracemalloc
from datetime import datetime, timedelta
from pathlib import Path

DUE = 1_000
REPEATS = 5
NOW = datetime(2026, 3, 2, 9, 0, 0)
INSERT_CHUNK = 5_000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tasks", type=int, default=100_000, help="tasks in the table")
    parser.add_argument(
        "--grow-to", type=int, default=1_000_000, help="tasks for the memory check"
    )
    parser.add_argument(
        "--deliveries", type=int, default=2_000, help="reminders to deliver"
    )
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)

    workdir = Path(tempfile.mkdtemp(prefix="threadtask-bench-"))
    try:
        settings = setup(workdir)
        bench_tick(args.tasks, args.grow_to)
        bench_delivery(settings, workdir, args.deliveries)
    finally:
        if args.keep:
            print(f"kept {workdir}")
        else:
            shutil.rmtree(workdir)


def setup(workdir: Path):
    from core.config import Settings, use_settings
    from core.db import database, migrate_database, open_database

    settings = use_settings(
        Settings(
            _env_file=None,  # type: ignore[call-arg]
            data_dir=workdir / "data",
            mailbox_address="tracker@example.com",
            redis_url="",
        )
    )
    open_database(settings.resolved_database_url)
    database.connect(reuse_if_open=True)
    migrate_database()
    return settings


def insert_tasks(start: int, count: int, due: int) -> None:
    """Insert ``count`` open tasks, the first ``due`` of them due at NOW."""
    from core.db import database
    from core.models import Task

    for offset in range(0, count, INSERT_CHUNK):
        rows = []
        for number in range(start + offset, start + min(offset + INSERT_CHUNK, count)):
            is_due = number - start < due
            rows.append(
                {
                    "creator_email": "carol@example.com",
                    "assigned_to": "alex@example.com",
                    "subject": f"Task number {number}",
                    "thread_id": f"thread-{number:08d}",
                    "latest_message_id": f"<m{number}@mail.example.com>",
                    "criticality": "medium",
                    "created_at": NOW - timedelta(days=2),
                    "modified_at": NOW - timedelta(days=2),
                    "next_reminder_at": (
                        NOW - timedelta(minutes=1 + number % 60)
                        if is_due
                        else NOW + timedelta(days=1 + number % 7)
                    ),
                }
            )
        with database.atomic():
            Task.insert_many(rows).execute()


def bare_query() -> list[tuple]:
    from core.db import database

    cursor = database.execute_sql(
        "SELECT id, status, criticality, assigned_to, creator_email FROM task "
        "WHERE next_reminder_at <= ? ORDER BY next_reminder_at, id",
        (NOW,),
    )
    return cursor.fetchall()


def make_due_again(ids: list[int]) -> None:
    from core.db import database
    from core.models import Delivery, Task

    with database.atomic():
        Delivery.delete().execute()
        Task.update(
            next_reminder_at=NOW - timedelta(minutes=5), reminder_due_at=None
        ).where(Task.id.in_(ids)).execute()


def time_tick(ids: list[int]) -> tuple[float, float, float, float, int]:
    """Return median seconds of the bare query, of the tick's UPDATE run as
    raw SQL, of the tick and of the hand-over, and the tick's peak bytes."""
    from core.config import get_settings
    from core.db import database
    from core.models import Delivery
    from core.reminders import (
        enqueue_due_reminders,
        queue_due_deliveries,
        tick_statement,
    )

    sql, params = tick_statement(NOW, get_settings())
    bare, raw, tick, hand_over = [], [], [], []
    for _ in range(REPEATS):
        started = time.perf_counter()
        rows = bare_query()
        bare.append(time.perf_counter() - started)
        assert len(rows) == len(ids), (len(rows), len(ids))

        started = time.perf_counter()
        with database.atomic():
            database.execute_sql(sql, params)
        raw.append(time.perf_counter() - started)
        make_due_again(ids)

        started = time.perf_counter()
        result = enqueue_due_reminders(NOW)
        tick.append(time.perf_counter() - started)
        assert result.due == len(ids), result

        started = time.perf_counter()
        queued = queue_due_deliveries(NOW)
        hand_over.append(time.perf_counter() - started)
        assert len(queued) == len(ids) == Delivery.select().count(), len(queued)
        make_due_again(ids)

    # tracemalloc slows Python down, so memory is measured in a run of its own.
    tracemalloc.start()
    enqueue_due_reminders(NOW)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    make_due_again(ids)
    return (
        statistics.median(bare),
        statistics.median(raw),
        statistics.median(tick),
        statistics.median(hand_over),
        peak,
    )


def bench_tick(tasks: int, grow_to: int) -> None:
    from core.models import Task

    insert_tasks(0, tasks, DUE)
    ids = [row.id for row in Task.select(Task.id).where(Task.next_reminder_at <= NOW)]
    report_tick(tasks, len(ids), *time_tick(ids))

    if grow_to > tasks:
        insert_tasks(tasks, grow_to - tasks, 0)
        report_tick(grow_to, len(ids), *time_tick(ids))


def report_tick(
    tasks: int,
    due: int,
    bare: float,
    raw: float,
    tick: float,
    hand_over: float,
    peak: int,
) -> None:
    print(f"tick over {tasks:,} tasks, {due:,} due (median of {REPEATS}):")
    print(f"  bare SQL query          {bare * 1000:7.1f} ms")
    print(f"  tick's SQL, run raw     {raw * 1000:7.1f} ms  ({raw / bare:.1f}x)")
    print(f"  enqueue_due_reminders   {tick * 1000:7.1f} ms  ({tick / bare:.1f}x)")
    print(f"  peak Python memory      {peak / 1024:7.0f} KiB")
    print(
        f"  then queue_due_deliveries {hand_over * 1000:5.1f} ms "
        "(marks into queued delivery rows, no queue)"
    )


def bench_delivery(settings, workdir: Path, count: int) -> None:
    import persistqueue
    import persistqueue.serializers.json as json_serializer

    from core.db import database
    from core.models import Delivery, Task
    from core.outbound import OutboxTransport
    from core.reminders import enqueue_due_reminders, queue_due_deliveries
    from scheduler.queue import SQLiteReminderQueue
    from scheduler.worker import build_handler

    # Only the tasks of this part may be due.
    Delivery.delete().execute()
    Task.update(next_reminder_at=NOW + timedelta(days=30)).execute()
    ids = [row.id for row in Task.select(Task.id).order_by(Task.id).limit(count)]
    Task.update(next_reminder_at=NOW - timedelta(minutes=1)).where(
        Task.id.in_(ids)
    ).execute()
    enqueue_due_reminders(NOW)
    delivery_ids = []
    while batch := queue_due_deliveries(NOW + timedelta(seconds=1)):
        delivery_ids += batch
    assert len(delivery_ids) == count, len(delivery_ids)

    # Bare loop: the same count of put, get and ack on a fresh queue file.
    bare_queue = persistqueue.SQLiteAckQueue(
        str(workdir / "bare-queue"),
        multithreading=True,
        serializer=json_serializer,
    )
    started = time.perf_counter()
    for delivery_id in delivery_ids:
        bare_queue.put({"delivery_id": delivery_id})
    for _ in delivery_ids:
        item = bare_queue.get(block=False, raw=True)
        bare_queue.ack(id=item["pqid"])
    bare = time.perf_counter() - started
    bare_queue.close()

    queue = SQLiteReminderQueue(settings.resolved_queue_dir, consumer=True)
    transport = OutboxTransport(settings.resolved_outbox_dir)
    handler = build_handler(settings, transport=transport)
    database.close()
    started = time.perf_counter()
    queue.enqueue(delivery_ids)
    handled = queue.work(handler, burst=True, stop=threading.Event())
    full = time.perf_counter() - started
    queue.close()
    database.connect(reuse_if_open=True)
    sent = Delivery.select().where(Delivery.status == "sent").count()
    assert handled == count, handled
    assert sent == count, sent

    bare_rate = count / bare
    full_rate = count / full
    print(f"delivery of {count:,} reminders to the outbox:")
    print(f"  bare persist-queue put/get/ack  {bare_rate:8.0f} per s")
    print(
        f"  end to end                      {full_rate:8.0f} per s "
        f"({full_rate / bare_rate:.0%} of the bare loop)"
    )


if __name__ == "__main__":
    main()
