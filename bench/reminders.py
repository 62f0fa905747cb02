"""Benchmark the reminder tick and the delivery of reminders to the outbox.

Everything runs on a fresh SQLite database and queue folder in a temporary
directory, and each measurement sits beside its floor from the same run:

1. Tick: first over 10,000 tasks, 1,000 due, each with an HTML body of
   20,000 bytes (``--body-bytes``) as a task made from a real email has, in
   a database of its own. Then over a table of open tasks without bodies
   (default 100,000) of which 1,000 are due.
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
   put/get/ack loop of the same count. Five rounds, each timing the bare
   loop right before the full path, follow an untimed warm-up, and the
   median of their ratios is reported, because the speed of the disk's
   syncs drifts during a run.

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

import peewee as pw

DUE = 1_000
REPEATS = 15
DELIVERY_ROUNDS = 5
BODIES_TASKS = 10_000
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
    parser.add_argument(
        "--body-bytes",
        type=int,
        default=20_000,
        help="size of each task's HTML body in the tick run over 10,000 tasks",
    )
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)

    workdir = Path(tempfile.mkdtemp(prefix="threadtask-bench-"))
    try:
        setup(workdir / "bodies")
        bench_tick_with_bodies(BODIES_TASKS, args.body_bytes)
        settings = setup(workdir)
        bench_tick(args.tasks, args.grow_to)
        bench_delivery(settings, workdir, args.deliveries)
    finally:
        if args.keep:
            print(f"kept {workdir}")
        else:
            shutil.rmtree(workdir)


def setup(workdir: Path):
    """Open a fresh SQLite database under ``workdir`` and make it the one used."""
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


def bench_tick_with_bodies(tasks: int, body_bytes: int) -> None:
    """Time the tick over tasks whose emails had HTML bodies of this size."""
    from core.db import database
    from core.models import Task, TaskBody

    insert_tasks(0, tasks, DUE)
    body = "<p>" + "x" * max(body_bytes - 7, 0) + "</p>"
    with database.atomic():
        TaskBody.insert_from(
            Task.select(Task.id, pw.Value(body)), [TaskBody.task, TaskBody.html]
        ).execute()
    ids = [row.id for row in Task.select(Task.id).where(Task.next_reminder_at <= NOW)]
    print(f"with a {body_bytes:,}-byte HTML body per task:")
    report_tick(tasks, len(ids), *time_tick(ids))


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
    # An untimed round first, so no round pays for first-use costs such as
    # imports, SQL built on first use and a cold page cache.
    warm_up = make_deliveries_due(min(count, 100))
    time_bare_loop(workdir, "warm-up", warm_up)
    time_delivery(settings, workdir, "warm-up", warm_up)

    bare_rates, full_rates = [], []
    for round_number in range(DELIVERY_ROUNDS):
        delivery_ids = make_deliveries_due(count)
        bare_rates.append(count / time_bare_loop(workdir, round_number, delivery_ids))
        full_rates.append(
            count / time_delivery(settings, workdir, round_number, delivery_ids)
        )

    ratios = [full / bare for full, bare in zip(full_rates, bare_rates, strict=True)]
    print(
        f"delivery of {count:,} reminders to the outbox "
        f"(each round: the bare loop, then the same count end to end):"
    )
    for number, (bare, full, ratio) in enumerate(
        zip(bare_rates, full_rates, ratios, strict=True), start=1
    ):
        print(
            f"  round {number}: bare persist-queue put/get/ack {bare:5.0f} per s, "
            f"end to end {full:4.0f} per s ({ratio:.0%})"
        )
    print(f"  median end to end / bare loop: {statistics.median(ratios):.0%}")


def make_deliveries_due(count: int) -> list[int]:
    """Make the first ``count`` tasks due and hand their reminders over."""
    from core.models import Delivery, MailMessage, Task
    from core.reminders import enqueue_due_reminders, queue_due_deliveries

    # Only these tasks may be due, and none was reminded before, so the
    # sender's interval check lets every reminder through.
    Delivery.delete().execute()
    MailMessage.delete().where(MailMessage.direction == "out").execute()
    Task.update(
        next_reminder_at=NOW + timedelta(days=30), last_reminder_at=None
    ).execute()
    ids = [row.id for row in Task.select(Task.id).order_by(Task.id).limit(count)]
    Task.update(next_reminder_at=NOW - timedelta(minutes=1)).where(
        Task.id.in_(ids)
    ).execute()
    enqueue_due_reminders(NOW)
    delivery_ids = []
    while batch := queue_due_deliveries(NOW + timedelta(seconds=1)):
        delivery_ids += batch
    assert len(delivery_ids) == count, len(delivery_ids)
    return delivery_ids


def time_bare_loop(workdir: Path, round_name: object, delivery_ids: list[int]) -> float:
    """Return the seconds of put, get and ack for each id on a fresh queue file."""
    import persistqueue
    import persistqueue.serializers.json as json_serializer

    queue = persistqueue.SQLiteAckQueue(
        str(workdir / f"bare-queue-{round_name}"),
        multithreading=True,
        serializer=json_serializer,
    )
    started = time.perf_counter()
    for delivery_id in delivery_ids:
        queue.put({"delivery_id": delivery_id})
    for _ in delivery_ids:
        item = queue.get(block=False, raw=True)
        queue.ack(id=item["pqid"])
    elapsed = time.perf_counter() - started
    queue.close()
    return elapsed


def time_delivery(
    settings, workdir: Path, round_name: object, delivery_ids: list[int]
) -> float:
    """Return the seconds to put each id on the queue and deliver them all."""
    from core.db import database
    from core.models import Delivery
    from core.outbound import OutboxTransport
    from scheduler.queue import SQLiteReminderQueue
    from scheduler.worker import build_handler

    queue = SQLiteReminderQueue(workdir / f"queue-{round_name}", consumer=True)
    transport = OutboxTransport(workdir / f"outbox-{round_name}")
    handler = build_handler(settings, transport=transport)
    database.close()
    started = time.perf_counter()
    queue.enqueue(delivery_ids)
    handled = queue.work(handler, burst=True, stop=threading.Event())
    elapsed = time.perf_counter() - started
    queue.close()
    database.connect(reuse_if_open=True)
    sent = Delivery.select().where(Delivery.status == "sent").count()
    assert handled == len(delivery_ids), handled
    assert sent == len(delivery_ids), sent
    return elapsed


if __name__ == "__main__":
    main()
