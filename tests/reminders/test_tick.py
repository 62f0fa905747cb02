"""The reminder tick: which tasks are due, who gets reminded, and how often."""

from __future__ import annotations

from datetime import timedelta

from freezegun import freeze_time
from playhouse.test_utils import count_queries

from core.config import get_settings, use_settings
from core.models import Delivery, Task
from core.reminders import (
    REMINDER_COLUMNS,
    _has_reminder_or_needs_none,
    _reminder_rows,
    enqueue_due_reminders,
)
from core.tasks import update_task
from tests.conftest import ASSIGNEE, CREATOR, actor
from tests.reminders.conftest import START, make_task


def reminders_of(task) -> list[Delivery]:
    return list(
        Delivery.select()
        .where((Delivery.task == task.id) & (Delivery.kind != "assigned"))
        .order_by(Delivery.id)
    )


def test_tick_creates_reminder_for_due_task(db):
    due = make_task(criticality="high")
    later = make_task(criticality="low")

    result = enqueue_due_reminders(START + timedelta(hours=1))

    assert result.created == 1
    [reminder] = reminders_of(due)
    assert reminder.kind == "open_reminder"
    assert reminder.recipient == ASSIGNEE
    assert reminder.status == "pending"
    assert reminders_of(later) == []
    assert Task.get_by_id(due.id).next_reminder_at == START + timedelta(hours=2)


def test_clock_down_three_days_reminds_once(db):
    task = make_task(criticality="medium")
    restart = START + timedelta(days=3, minutes=5)

    enqueue_due_reminders(restart)
    enqueue_due_reminders(restart + timedelta(minutes=30))

    assert len(reminders_of(task)) == 1
    assert Task.get_by_id(task.id).next_reminder_at == restart + timedelta(days=1)


def test_low_to_critical_reminds_at_next_tick(db):
    task = make_task(criticality="low")
    enqueue_due_reminders(START + timedelta(minutes=30))
    assert reminders_of(task) == []

    update_task(
        actor(CREATOR),
        task.id,
        {"criticality": "critical"},
        now=START + timedelta(minutes=40),
    )
    enqueue_due_reminders(START + timedelta(minutes=60))

    [reminder] = reminders_of(task)
    assert reminder.kind == "open_reminder"
    assert reminder.scheduled_at == START + timedelta(minutes=60)


def test_fixed_task_reminds_creator(db):
    task = make_task(criticality="high")
    update_task(actor(ASSIGNEE), task.id, {"status": "fixed"}, now=START)

    enqueue_due_reminders(START + timedelta(hours=1))

    [reminder] = reminders_of(task)
    assert reminder.kind == "fixed_reminder"
    assert reminder.recipient == CREATOR


def test_closed_task_never_reminded(db):
    task = make_task(criticality="critical")
    update_task(actor(CREATOR), task.id, {"status": "closed"}, now=START)

    enqueue_due_reminders(START + timedelta(days=30))

    assert reminders_of(task) == []
    assert Task.get_by_id(task.id).next_reminder_at is None


def test_unassigned_task_goes_to_triage(db, make_settings):
    use_settings(make_settings(triage_email="Triage@Example.com"))
    task = make_task(assigned_to="", criticality="high")

    enqueue_due_reminders(START + timedelta(hours=1))

    [reminder] = reminders_of(task)
    assert reminder.recipient == "triage@example.com"
    assert reminder.status == "pending"


def test_unassigned_without_triage_is_skipped(db):
    task = make_task(assigned_to="", criticality="high")

    result = enqueue_due_reminders(START + timedelta(hours=1))

    [reminder] = reminders_of(task)
    assert result.created == 1
    assert reminder.status == "skipped"
    assert reminder.recipient == ""
    assert "TRIAGE_EMAIL" in reminder.error


def test_waiting_reminder_not_created_again(db):
    task = make_task(criticality="critical")

    for minutes in (30, 60, 90, 120):
        enqueue_due_reminders(START + timedelta(minutes=minutes))

    assert len(reminders_of(task)) == 1
    assert Task.get_by_id(task.id).next_reminder_at == START + timedelta(minutes=150)


def test_two_clocks_create_one_reminder(db):
    task = make_task(criticality="high")
    now = START + timedelta(hours=1)
    settings = get_settings()
    batch = Task.select(Task.id).where(Task.next_reminder_at <= now)

    # Both clocks insert before either advances the schedule.
    inserted = [
        Delivery.insert_from(_reminder_rows(batch, now, settings), REMINDER_COLUMNS)
        .on_conflict_ignore()
        .as_rowcount()
        .execute()
        for _ in range(2)
    ]
    enqueue_due_reminders(now)

    assert inserted == [1, 0]
    assert len(reminders_of(task)) == 1


def test_unreminded_task_is_not_advanced(db):
    task = make_task(criticality="high")
    now = START + timedelta(hours=1)

    changed = (
        Task.update(next_reminder_at=None)
        .where((Task.id == task.id) & _has_reminder_or_needs_none(now))
        .execute()
    )

    assert changed == 0


def test_tick_works_in_batches(db):
    tasks = [make_task(criticality="high") for _ in range(7)]

    result = enqueue_due_reminders(START + timedelta(hours=1), batch_size=3)

    assert result.created == 7
    assert all(len(reminders_of(task)) == 1 for task in tasks)


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

    assert len(reminders_of(task)) == 1
