"""The reminder tick and the hand-over: which tasks are due, who gets
reminded, and how often."""

from __future__ import annotations

import threading
from datetime import datetime, timedelta

from freezegun import freeze_time
from playhouse.test_utils import count_queries

from core.config import use_settings
from core.models import Delivery, Task
from core.reminders import enqueue_due_reminders, queue_due_deliveries
from core.tasks import update_task
from tests.conftest import ASSIGNEE, CREATOR, actor
from tests.reminders.conftest import START, make_task


def reminders_of(task) -> list[Delivery]:
    return list(
        Delivery.select()
        .where((Delivery.task == task.id) & (Delivery.kind != "assigned"))
        .order_by(Delivery.id)
    )


def only_reminders(ids: list[int]) -> list[int]:
    """Leave out the assignment notices that creating a task queues too."""
    return [
        row.id
        for row in Delivery.select(Delivery.id)
        .where(Delivery.id.in_(ids) & (Delivery.kind != "assigned"))
        .order_by(Delivery.id)
    ]


def tick(now: datetime) -> list[int]:
    """Run the tick and the hand-over at ``now``, as the clock's tick job does.

    Returns the ids of the reminders queued.
    """
    enqueue_due_reminders(now)
    queued = []
    while ids := queue_due_deliveries(now):
        queued += ids
    return only_reminders(queued)


def test_tick_marks_and_advances_due_task(db):
    due = make_task(criticality="high")
    later = make_task(criticality="low")
    now = START + timedelta(hours=1)

    result = enqueue_due_reminders(now)

    assert result.due == 1
    task = Task.get_by_id(due.id)
    assert task.reminder_due_at == now
    assert task.next_reminder_at == START + timedelta(hours=2)
    assert Task.get_by_id(later.id).reminder_due_at is None
    # The tick writes only the task row; the hand-over makes the delivery.
    assert reminders_of(due) == []


def test_hand_over_queues_marked_reminder(db):
    due = make_task(criticality="high")
    later = make_task(criticality="low")
    now = START + timedelta(hours=1)

    queued = tick(now)

    [reminder] = reminders_of(due)
    assert queued == [reminder.id]
    assert reminder.kind == "open_reminder"
    assert reminder.recipient == ASSIGNEE
    assert reminder.status == "queued"
    assert reminder.scheduled_at == now
    assert Task.get_by_id(due.id).reminder_due_at is None
    assert reminders_of(later) == []


def test_clock_down_three_days_reminds_once(db):
    task = make_task(criticality="medium")
    restart = START + timedelta(days=3, minutes=5)

    tick(restart)
    tick(restart + timedelta(minutes=30))

    assert len(reminders_of(task)) == 1
    assert Task.get_by_id(task.id).next_reminder_at == restart + timedelta(days=1)


def test_low_to_critical_reminds_at_next_tick(db):
    task = make_task(criticality="low")
    tick(START + timedelta(minutes=30))
    assert reminders_of(task) == []

    update_task(
        actor(CREATOR),
        task.id,
        {"criticality": "critical"},
        now=START + timedelta(minutes=40),
    )
    tick(START + timedelta(minutes=60))

    [reminder] = reminders_of(task)
    assert reminder.kind == "open_reminder"
    assert reminder.scheduled_at == START + timedelta(minutes=60)


def test_fixed_task_reminds_creator(db):
    task = make_task(criticality="high")
    update_task(actor(ASSIGNEE), task.id, {"status": "fixed"}, now=START)

    tick(START + timedelta(hours=1))

    [reminder] = reminders_of(task)
    assert reminder.kind == "fixed_reminder"
    assert reminder.recipient == CREATOR


def test_closed_task_never_reminded(db):
    task = make_task(criticality="critical")
    update_task(actor(CREATOR), task.id, {"status": "closed"}, now=START)

    tick(START + timedelta(days=30))

    assert reminders_of(task) == []
    assert Task.get_by_id(task.id).next_reminder_at is None


def test_status_change_drops_mark(db):
    task = make_task(criticality="high")
    now = START + timedelta(hours=1)
    enqueue_due_reminders(now)

    update_task(actor(ASSIGNEE), task.id, {"status": "fixed"}, now=now)
    queue_due_deliveries(now)

    assert reminders_of(task) == []
    stored = Task.get_by_id(task.id)
    assert stored.reminder_due_at is None
    assert stored.next_reminder_at == now + timedelta(hours=1)


def test_closed_after_tick_not_reminded(db):
    task = make_task(criticality="high")
    now = START + timedelta(hours=1)
    enqueue_due_reminders(now)
    # Written straight to the row, as a change that skipped the task rules
    # would leave it; the hand-over must still not remind a closed task.
    Task.update(status="closed").where(Task.id == task.id).execute()

    assert only_reminders(queue_due_deliveries(now)) == []
    assert reminders_of(task) == []
    assert Task.get_by_id(task.id).reminder_due_at is None


def test_unassigned_task_goes_to_triage(db, make_settings):
    use_settings(make_settings(triage_email="Triage@Example.com"))
    task = make_task(assigned_to="", criticality="high")

    tick(START + timedelta(hours=1))

    [reminder] = reminders_of(task)
    assert reminder.recipient == "triage@example.com"
    assert reminder.status == "queued"


def test_unassigned_without_triage_is_skipped(db):
    task = make_task(assigned_to="", criticality="high")

    queued = tick(START + timedelta(hours=1))

    [reminder] = reminders_of(task)
    assert queued == []
    assert reminder.status == "skipped"
    assert reminder.recipient == ""
    assert "TRIAGE_EMAIL" in reminder.error


def test_repeated_ticks_keep_first_mark(db):
    task = make_task(criticality="critical")

    for minutes in (30, 60, 90):
        enqueue_due_reminders(START + timedelta(minutes=minutes))

    stored = Task.get_by_id(task.id)
    assert stored.reminder_due_at == START + timedelta(minutes=30)
    assert stored.next_reminder_at == START + timedelta(minutes=120)
    tick(START + timedelta(minutes=120))
    assert len(reminders_of(task)) == 1


def test_waiting_reminder_not_created_again(db):
    task = make_task(criticality="critical")

    for minutes in (30, 60, 90, 120):
        tick(START + timedelta(minutes=minutes))

    [reminder] = reminders_of(task)
    assert reminder.status == "queued"
    stored = Task.get_by_id(task.id)
    assert stored.next_reminder_at == START + timedelta(minutes=150)
    assert stored.reminder_due_at is None


def test_next_reminder_after_first_sent(db):
    task = make_task(criticality="critical")
    tick(START + timedelta(minutes=30))
    Delivery.update(status="sent").where(Delivery.task == task.id).execute()

    tick(START + timedelta(minutes=60))

    assert [r.status for r in reminders_of(task)] == ["sent", "queued"]


def test_second_hand_over_finds_nothing(db):
    task = make_task(criticality="high")
    now = START + timedelta(hours=1)
    enqueue_due_reminders(now)

    first = only_reminders(queue_due_deliveries(now))
    Delivery.update(status="sent").where(Delivery.id.in_(first)).execute()
    second = only_reminders(queue_due_deliveries(now))

    assert len(first) == 1
    assert second == []
    assert len(reminders_of(task)) == 1


def test_future_mark_waits(db):
    task = make_task(criticality="high")
    enqueue_due_reminders(START + timedelta(hours=1))

    queued = queue_due_deliveries(START + timedelta(minutes=59))
    assert only_reminders(queued) == []
    assert Task.get_by_id(task.id).reminder_due_at is not None


def test_tick_works_in_batches(db):
    tasks = [make_task(criticality="high") for _ in range(7)]

    result = enqueue_due_reminders(START + timedelta(hours=1), batch_size=3)

    assert result.due == 7
    queued = queue_due_deliveries(START + timedelta(hours=1), limit=3)
    assert len(only_reminders(queued)) == 3
    tick(START + timedelta(hours=1))
    assert all(len(reminders_of(task)) == 1 for task in tasks)


def test_hand_over_skips_unsendable_batch(db):
    # The first batch of marks yields only skipped rows; the next one's
    # reminder must still come back from the same call.
    for _ in range(3):
        make_task(assigned_to="", criticality="high")
    sendable = make_task(criticality="high", now=START + timedelta(minutes=30))
    enqueue_due_reminders(START + timedelta(hours=1))
    Task.update(reminder_due_at=START + timedelta(hours=1, minutes=1)).where(
        Task.id == sendable.id
    ).execute()

    queued = queue_due_deliveries(START + timedelta(hours=2), limit=3)

    assert only_reminders(queued) == [reminders_of(sendable)[0].id]


def test_tick_query_count_does_not_grow(db):
    for _ in range(5):
        make_task(criticality="high")
    with count_queries() as few:
        enqueue_due_reminders(START + timedelta(hours=1))
    for _ in range(40):
        make_task(criticality="high")

    with count_queries() as many:
        enqueue_due_reminders(START + timedelta(hours=2))

    assert many.count == few.count


def test_freezegun_time_is_used_by_default(db):
    task = make_task(criticality="high")

    with freeze_time(START + timedelta(hours=1, minutes=1)):
        enqueue_due_reminders()
        queue_due_deliveries()

    assert len(reminders_of(task)) == 1


def test_concurrent_hand_overs_one_reminder(db):
    tasks = [make_task(criticality="high") for _ in range(40)]
    now = START + timedelta(hours=1)
    enqueue_due_reminders(now)
    start = threading.Barrier(2)
    queued: list[list[int]] = [[], []]

    def clock(number: int) -> None:
        start.wait()
        with db.connection_context():
            while ids := queue_due_deliveries(now, limit=7):
                queued[number] += ids

    threads = [threading.Thread(target=clock, args=(n,)) for n in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)

    assert all(len(reminders_of(task)) == 1 for task in tasks)
    both = only_reminders(queued[0]) + only_reminders(queued[1])
    assert sorted(both) == sorted(reminders_of(t)[0].id for t in tasks)
    assert Task.select().where(Task.reminder_due_at.is_null(False)).count() == 0


def test_unassigned_skip_recorded_once(db):
    task = make_task(assigned_to="", criticality="critical")

    for minutes in (30, 60, 90):
        tick(START + timedelta(minutes=minutes))

    [reminder] = reminders_of(task)
    assert reminder.status == "skipped"
    assert reminder.scheduled_at == START + timedelta(minutes=30)
    assert Task.get_by_id(task.id).reminder_due_at is None


def test_skip_recorded_again_after_other_reminder(db):
    task = make_task(assigned_to="", criticality="critical")
    tick(START + timedelta(minutes=30))
    update_task(actor(CREATOR), task.id, {"assigned_to": ASSIGNEE}, now=START)
    tick(START + timedelta(minutes=60))
    Delivery.update(status="sent").where(Delivery.status == "queued").execute()
    update_task(actor(CREATOR), task.id, {"assigned_to": ""}, now=START)

    tick(START + timedelta(minutes=90))

    assert [r.status for r in reminders_of(task)] == ["skipped", "sent", "skipped"]
