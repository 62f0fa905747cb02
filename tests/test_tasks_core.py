"""The task rules in core.tasks, on SQLite and PostgreSQL."""

from datetime import datetime, timedelta

import pytest

from core import tasks
from core.errors import Conflict, Forbidden, InvalidField, NotFound, PreconditionFailed
from core.models import Delivery, Event, Task
from tests.conftest import ADMIN, ASSIGNEE, CREATOR, STRANGER, actor

NOW = datetime(2026, 3, 2, 9, 0, 0)


def new_task(**fields):
    values = {"thread_id": "thread-1", "subject": "Printer on fire", **fields}
    return tasks.create_task(actor(), values, now=NOW)


def test_create_defaults(db):
    task = new_task()

    assert task.status == "open"
    assert task.criticality == "medium"
    assert task.creator_email == CREATOR
    assert task.next_reminder_at == NOW + timedelta(days=1)
    assert [e.field for e in Event.select()] == ["created"]


def test_create_normalises_addresses(db):
    task = new_task(assigned_to="  Alex Example <ALEX@Example.COM> ")

    assert Task.get_by_id(task.id).assigned_to == ASSIGNEE


def test_create_rejects_bad_address(db):
    with pytest.raises(InvalidField) as raised:
        new_task(assigned_to="not an address")

    assert raised.value.field == "assigned_to"
    assert "alice@example.com" in raised.value.detail
    assert Task.select().count() == 0


def test_create_for_someone_else_needs_service(db):
    with pytest.raises(Forbidden):
        tasks.create_task(actor(STRANGER), {"thread_id": "t", "creator_email": CREATOR})

    service = tasks.Actor(email="bot@example.com", channel="mail", is_service=True)
    task = tasks.create_task(service, {"thread_id": "t", "creator_email": CREATOR})
    assert task.creator_email == CREATOR


def test_admin_may_create_for_someone_else(db):
    task = tasks.create_task(actor(ADMIN), {"thread_id": "t", "creator_email": CREATOR})

    assert task.creator_email == CREATOR


def test_duplicate_thread_conflicts(db):
    first = new_task()

    with pytest.raises(Conflict) as raised:
        new_task()

    assert raised.value.existing_task_id == first.id
    assert Task.select().count() == 1


def test_assignment_queues_notice(db):
    task = new_task()
    tasks.update_task(actor(STRANGER), task.id, {"assigned_to": ASSIGNEE}, now=NOW)

    notices = list(Delivery.select().where(Delivery.kind == "assigned"))
    assert len(notices) == 1
    assert notices[0].recipient == ASSIGNEE
    assert notices[0].status == "pending"


def test_anyone_may_fix_and_reopen(db):
    task = new_task()

    fixed = tasks.update_task(actor(STRANGER), task.id, {"status": "fixed"}, now=NOW)
    assert fixed.status == "fixed"
    reopened = tasks.update_task(actor(ASSIGNEE), task.id, {"status": "open"}, now=NOW)
    assert reopened.status == "open"


def test_only_creator_closes(db):
    task = new_task()

    with pytest.raises(Forbidden) as raised:
        tasks.update_task(actor(ASSIGNEE), task.id, {"status": "closed"})

    assert raised.value.detail == (
        f"Only {CREATOR}, who created this task, can close it."
    )
    assert Task.get_by_id(task.id).status == "open"
    closed = tasks.update_task(actor(CREATOR), task.id, {"status": "closed"})
    assert closed.status == "closed"
    assert closed.next_reminder_at is None


def test_reopen_closed_task(db):
    task = new_task()
    tasks.update_task(actor(CREATOR), task.id, {"status": "closed"}, now=NOW)

    reopened = tasks.update_task(actor(STRANGER), task.id, {"status": "open"}, now=NOW)

    assert reopened.status == "open"
    assert reopened.next_reminder_at == NOW + timedelta(days=1)


def test_same_status_records_nothing(db):
    task = new_task()
    before = Event.select().count()

    same = tasks.update_task(actor(), task.id, {"status": "open"})

    assert same.version == task.version
    assert Event.select().count() == before


def test_events_record_old_and_new(db):
    task = new_task()

    tasks.update_task(actor(ASSIGNEE), task.id, {"criticality": "high"}, now=NOW)

    event = Event.select().where(Event.field == "criticality").get()
    assert event.actor == ASSIGNEE
    assert event.channel == "api"
    assert (event.old_value, event.new_value) == ("medium", "high")


def test_criticality_raise_makes_reminder_due(db):
    task = new_task(criticality="low")
    assert task.next_reminder_at == NOW + timedelta(weeks=1)

    later = NOW + timedelta(days=2)
    raised = tasks.update_task(actor(), task.id, {"criticality": "critical"}, now=later)

    assert raised.next_reminder_at <= later


def test_criticality_after_status_change_keeps_new_period(db):
    task = new_task(criticality="medium")
    fixed_at = NOW + timedelta(days=20)
    tasks.update_task(actor(), task.id, {"status": "fixed"}, now=fixed_at)

    raised = tasks.update_task(
        actor(), task.id, {"criticality": "high"}, now=fixed_at + timedelta(minutes=5)
    )

    # One hour after the task was marked fixed, not after it was created.
    assert raised.next_reminder_at == fixed_at + timedelta(hours=1)


def test_criticality_lowered_after_reminder(db):
    task = new_task(criticality="critical")
    reminded = NOW + timedelta(hours=3)
    Task.update(
        last_reminder_at=reminded, next_reminder_at=reminded + timedelta(minutes=30)
    ).where(Task.id == task.id).execute()

    lowered = tasks.update_task(
        actor(), task.id, {"criticality": "low"}, now=reminded + timedelta(minutes=1)
    )

    assert lowered.next_reminder_at == reminded + timedelta(weeks=1)


def test_delete_needs_admin(db):
    task = new_task()

    with pytest.raises(Forbidden):
        tasks.delete_task(actor(CREATOR), task.id)
    tasks.delete_task(actor(ADMIN), task.id)

    assert Task.select().count() == 0
    assert Event.select().count() == 0


def test_missing_task(db):
    with pytest.raises(NotFound):
        tasks.update_task(actor(), 999, {"status": "fixed"})


def test_stale_version_changes_nothing(db):
    task = new_task()

    with pytest.raises(PreconditionFailed):
        tasks.update_task(actor(), task.id, {"subject": "New"}, expected_version=7)

    assert Task.get_by_id(task.id).subject == "Printer on fire"


def test_subject_line_breaks_folded(db):
    task = new_task(subject="Hello\r\nBcc: victim@example.com")

    assert "\n" not in task.subject
    assert task.subject == "Hello Bcc: victim@example.com"


def test_allowed_domains(make_settings, db):
    from core.config import use_settings

    use_settings(make_settings(allowed_email_domains=("example.com",)))
    new_task(assigned_to=ASSIGNEE)

    with pytest.raises(InvalidField) as raised:
        new_task(thread_id="t2", assigned_to="outsider@evil.test")

    assert raised.value.field == "assigned_to"
    assert "ALLOWED_EMAIL_DOMAINS" in raised.value.detail
    assert Task.select().count() == 1


def test_unknown_field_rejected(db):
    with pytest.raises(InvalidField) as raised:
        new_task(colour="red")

    assert raised.value.field == "colour"


def test_failed_update_is_atomic(db):
    task = new_task()

    with pytest.raises(InvalidField):
        tasks.update_task(actor(), task.id, {"subject": "ok", "status": "done"})

    stored = Task.get_by_id(task.id)
    assert stored.subject == "Printer on fire"
    assert Event.select().count() == 1


@pytest.mark.parametrize(
    "address",
    ["x" * 65 + "@example.com", "a@" + "b" * 250 + ".com", "a@b.com, c@d.com"],
    ids=["long-local-part", "long-domain", "two-addresses"],
)
def test_address_limits(db, address):
    with pytest.raises(InvalidField) as raised:
        new_task(assigned_to=address)

    assert raised.value.field == "assigned_to"


@pytest.fixture
def heard():
    """Collect every task_changed signal as (task id, changed field names)."""
    received: list[tuple[int, list[str]]] = []

    def listen(task, *, actor, changes, **_):
        received.append((task.id, sorted(changes)))

    tasks.task_changed.connect(listen)
    yield received
    tasks.task_changed.disconnect(listen)


def test_signal_sent_at_once_outside_transaction(db, heard):
    task = new_task()

    tasks.update_task(actor(), task.id, {"criticality": "high"})

    assert heard == [(task.id, ["created"]), (task.id, ["criticality"])]


def test_held_signal_waits_for_commit(db, heard):
    task = new_task()
    heard.clear()

    with tasks.signals_after_commit(), db.atomic():
        tasks.update_task(actor(), task.id, {"criticality": "high"})
        assert heard == []

    assert heard == [(task.id, ["criticality"])]


def test_held_signal_dropped_on_rollback(db, heard):
    task = new_task()
    heard.clear()

    with pytest.raises(RuntimeError):
        with tasks.signals_after_commit(), db.atomic():
            tasks.update_task(actor(), task.id, {"criticality": "high"})
            raise RuntimeError("the caller's next step failed")

    assert heard == []
    assert Task.get_by_id(task.id).criticality == "medium"
    # The hold ended with the block: later changes are heard at once.
    tasks.update_task(actor(), task.id, {"criticality": "low"})
    assert heard == [(task.id, ["criticality"])]
