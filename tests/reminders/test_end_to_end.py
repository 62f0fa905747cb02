"""The whole flow on the real-mail corpus: Maildir, tasks, clock, outbox.

The corpus emails are dropped into the Maildir and read by the mail reader.
The clock then runs at injected times, and the worker writes reminders into
the outbox, which must thread under the original emails.
"""

from __future__ import annotations

import threading
from datetime import datetime, timedelta
from email import message_from_bytes, policy

from freezegun import freeze_time

from core.config import use_settings
from core.mail import poll_mailbox_once
from core.mail.maildir import MaildirMailbox
from core.models import Delivery, MailMessage, Task
from core.tasks import Actor, update_task
from scheduler.clock import tick
from scheduler.worker import build_handler
from tests.conftest import CORPUS

# Dates a file old enough that the Maildir reader takes it at once.
from tests.mail.conftest import settle
from tests.reminders.conftest import outbox_messages

TRIAGE = "triage@example.com"
ARRIVED = datetime(2026, 3, 2, 9, 0, 0)
REPLY_FILE = "gmail-reply-multipart-alternative.eml"


def run_clock_and_worker(settings, outbox, make_queue, at: datetime) -> list:
    """Run one clock tick and a burst worker at ``at``; return the new emails."""
    before = {email["Message-ID"] for email in outbox_messages(outbox)}
    with freeze_time(at):
        tick(
            make_queue("sqlite", consumer=False, directory=settings.resolved_queue_dir),
            at,
        )
        queue = make_queue("sqlite", directory=settings.resolved_queue_dir)
        queue.work(
            build_handler(settings, transport=outbox),
            burst=True,
            stop=threading.Event(),
        )
    return [e for e in outbox_messages(outbox) if e["Message-ID"] not in before]


def reminder_for(emails, task_id: int):
    for email in emails:
        delivery = Delivery.get_by_id(int(email["X-Threadtask-Delivery"]))
        if delivery.task_id == task_id and delivery.kind != "assigned":
            return email
    return None


def test_corpus_tasks_get_threaded_reminders(db, make_settings, outbox, make_queue):
    settings = use_settings(make_settings(triage_email=TRIAGE))
    maildir = MaildirMailbox(settings.resolved_maildir)
    for path in sorted((CORPUS / "mail").glob("*.eml")):
        settle(maildir.path / "new" / path.name, path.read_bytes())
    with freeze_time(ARRIVED):
        poll_mailbox_once(settings)
    tasks = list(Task.select().order_by(Task.id))
    assert len(tasks) > 10

    # Medium tasks are due one day after they arrived.
    emails = run_clock_and_worker(
        settings, outbox, make_queue, ARRIVED + timedelta(days=1, minutes=1)
    )

    for task in tasks:
        email = reminder_for(emails, task.id)
        assert email is not None, f"task {task.id} got no reminder"
        assert email["To"] == (task.assigned_to or TRIAGE)
        assert email["In-Reply-To"] == task.latest_message_id
        assert email["References"].split()[-1] == task.latest_message_id
        if task.subject.lower().startswith("re:"):
            assert email["Subject"] == task.subject
        else:
            assert email["Subject"] == f"Re: {task.subject}".strip()
        read = MailMessage.get(MailMessage.message_id == task.latest_message_id)
        assert read.direction == "in"
        assert read.task_id == task.id


def test_reply_from_corpus_threads_under_original(
    db, make_settings, outbox, make_queue
):
    settings = use_settings(make_settings(triage_email=TRIAGE))
    raw = (CORPUS / "mail" / REPLY_FILE).read_bytes()
    original = message_from_bytes(raw, policy=policy.default)
    maildir = MaildirMailbox(settings.resolved_maildir)
    settle(maildir.path / "new" / REPLY_FILE, raw)
    with freeze_time(ARRIVED):
        poll_mailbox_once(settings)
    [task] = Task.select()

    [email] = [
        e
        for e in run_clock_and_worker(
            settings, outbox, make_queue, ARRIVED + timedelta(days=1, minutes=1)
        )
        if Delivery.get_by_id(int(e["X-Threadtask-Delivery"])).kind != "assigned"
    ]

    message_id = original["Message-ID"].strip()
    assert email["In-Reply-To"] == message_id
    assert email["References"].split()[-1] == message_id
    assert email["Subject"] == "Re: " + str(original["Subject"]).removeprefix("Re: ")
    assert email["To"] == (task.assigned_to or TRIAGE)
    assert email["Auto-Submitted"] == "auto-generated"


def test_fixed_reminds_creator_and_closed_stops(db, make_settings, outbox, make_queue):
    settings = use_settings(make_settings(triage_email=TRIAGE))
    maildir = MaildirMailbox(settings.resolved_maildir)
    settle(
        maildir.path / "new" / REPLY_FILE, (CORPUS / "mail" / REPLY_FILE).read_bytes()
    )
    with freeze_time(ARRIVED):
        poll_mailbox_once(settings)
    [task] = Task.select()
    first_day = ARRIVED + timedelta(days=1, minutes=1)
    assert reminder_for(
        run_clock_and_worker(settings, outbox, make_queue, first_day), task.id
    )

    fixed_at = first_day + timedelta(hours=2)
    update_task(Actor(TRIAGE, "api"), task.id, {"status": "fixed"}, now=fixed_at)
    fixed_email = reminder_for(
        run_clock_and_worker(
            settings, outbox, make_queue, fixed_at + timedelta(days=1, minutes=1)
        ),
        task.id,
    )

    assert fixed_email is not None
    assert fixed_email["To"] == task.creator_email
    assert "marked fixed" in fixed_email.get_body(("plain",)).get_content()
    assert fixed_email["In-Reply-To"] == task.latest_message_id

    closed_at = fixed_at + timedelta(days=1, hours=1)
    update_task(
        Actor(task.creator_email, "api"), task.id, {"status": "closed"}, now=closed_at
    )
    later = []
    for days in (1, 2, 8, 30):
        later += run_clock_and_worker(
            settings, outbox, make_queue, closed_at + timedelta(days=days)
        )

    assert later == []
