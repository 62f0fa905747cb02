"""The clock's schedule, its failure handling, and both process entry points."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import threading
from datetime import datetime, timedelta
from email.message import EmailMessage
from pathlib import Path

import pytest
from freezegun import freeze_time

from core.models import Delivery, Task
from core.timeutil import utcnow
from scheduler import clock
from scheduler.clock import build_scheduler, run_once
from scheduler.worker import build_handler
from tests.conftest import ASSIGNEE, CREATOR
from tests.mail.conftest import settle
from tests.reminders.conftest import make_task, outbox_messages
from tests.slack.conftest import ASSIGNEE_ID, BOT_TOKEN, SIGNING_SECRET

ROOT = Path(__file__).resolve().parents[2]
CLOCK_START = datetime(2026, 3, 2, 9, 0, 0)


def test_assignment_notice_leaves_within_a_minute(db, settings, outbox, make_queue):
    queue = make_queue("sqlite")
    with freeze_time(CLOCK_START) as frozen:
        scheduler = build_scheduler(settings, queue)
        make_task(now=utcnow(), assigned_to=ASSIGNEE)

        frozen.tick(timedelta(seconds=31))
        scheduler.run_pending()
        queue.work(
            build_handler(settings, transport=outbox),
            burst=True,
            stop=threading.Event(),
        )

    [email] = outbox_messages(outbox)
    assert email["To"] == ASSIGNEE
    assert "You have been assigned" in email.get_body(("plain",)).get_content()


def test_failing_job_is_logged_and_runs_again(
    db, settings, make_queue, monkeypatch, caplog
):
    calls = []

    def failing_poll() -> None:
        calls.append(utcnow())
        raise RuntimeError("mailbox unreachable")

    monkeypatch.setattr(clock, "poll_mail", failing_poll)
    queue = make_queue("sqlite")
    with freeze_time(CLOCK_START) as frozen:
        scheduler = build_scheduler(settings, queue)
        for _ in range(2):
            frozen.tick(timedelta(minutes=settings.mail_poll_minutes, seconds=1))
            scheduler.run_pending()

    assert len(calls) == 2
    failures = [r for r in caplog.records if "mail-poll failed" in r.getMessage()]
    assert len(failures) == 2
    assert failures[0].levelno == logging.ERROR
    assert failures[0].exc_info is not None


def test_tick_runs_on_schedule(db, settings, make_queue):
    task = make_task(now=CLOCK_START, criticality="critical")
    queue = make_queue("sqlite")
    with freeze_time(CLOCK_START) as frozen:
        scheduler = build_scheduler(settings, queue)
        frozen.tick(timedelta(minutes=settings.reminder_tick_minutes, seconds=1))
        scheduler.run_pending()

    reminder = Delivery.get(
        (Delivery.task == task.id) & (Delivery.kind == "open_reminder")
    )
    assert reminder.status == "queued"
    assert queue.waiting_count() == 2


def test_run_once_reports_failing_job(db, make_queue, monkeypatch):
    task = make_task(now=CLOCK_START, criticality="high")

    def failing_poll() -> None:
        raise RuntimeError("mailbox unreachable")

    monkeypatch.setattr(clock, "poll_mail", failing_poll)
    with freeze_time(CLOCK_START + timedelta(hours=2)):
        ok = run_once(make_queue("sqlite"))

    assert ok is False
    assert (
        Delivery.select()
        .where((Delivery.task == task.id) & (Delivery.kind == "open_reminder"))
        .count()
        == 1
    )


def process_env(settings) -> dict[str, str]:
    return {
        **os.environ,
        "DATA_DIR": str(settings.data_dir),
        "DATABASE_URL": settings.resolved_database_url,
        "MAILBOX_ADDRESS": settings.mailbox_address,
        "PUBLIC_BASE_URL": settings.public_base_url,
        "REDIS_URL": "",
        "MAIL_TRANSPORT": "outbox",
        "MAILDIR": str(settings.data_dir / "maildir"),
    }


def test_clock_once_and_worker_burst_processes(db, settings, outbox):
    task = make_task(now=utcnow() - timedelta(days=2), criticality="medium")
    env = process_env(settings)

    subprocess.run(
        [sys.executable, "-m", "scheduler.clock", "--once"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        timeout=120,
    )
    worker = subprocess.run(
        [sys.executable, "-m", "scheduler.worker", "--burst"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        timeout=120,
        text=True,
    )

    assert worker.returncode == 0, worker.stderr
    kinds = sorted(
        d.kind
        for d in Delivery.select().where(
            (Delivery.task == task.id) & (Delivery.status == "sent")
        )
    )
    assert kinds == ["assigned", "open_reminder"]
    assert len(outbox_messages(outbox)) == 2


@pytest.mark.parametrize("module", ["scheduler.clock", "scheduler.worker"])
def test_sigterm_stops_process_cleanly(db, settings, module):
    process = subprocess.Popen(
        [sys.executable, "-m", module],
        cwd=ROOT,
        env=process_env(settings),
        stderr=subprocess.PIPE,
        text=True,
    )
    for line in process.stderr:
        if "starting" in line:
            break
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=60)
    finally:
        process.kill()
    assert process.returncode == 0


def test_bad_settings_stop_start_up(settings):
    env = {**process_env(settings), "TRIAGE_EMAIL": "not an address"}

    result = subprocess.run(
        [sys.executable, "-m", "scheduler.worker", "--burst"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )

    assert result.returncode == 2
    assert "TRIAGE_EMAIL='not an address': not an email address" in result.stderr


def test_clock_once_takes_injected_time(db, settings, outbox):
    task = make_task(now=utcnow(), criticality="medium")
    later = (utcnow() + timedelta(days=1, minutes=1)).isoformat() + "Z"
    env = process_env(settings)

    subprocess.run(
        [sys.executable, "-m", "scheduler.clock", "--once", "--now", later],
        cwd=ROOT,
        env=env,
        capture_output=True,
        timeout=120,
    )

    reminder = Delivery.get(
        (Delivery.task == task.id) & (Delivery.kind == "open_reminder")
    )
    assert reminder.status == "queued"


def test_cli_send_and_deliver_reminders(runner, settings, outbox):
    make_task(now=utcnow() - timedelta(days=2), criticality="medium")

    sent = runner.invoke(args=["send-reminders"])
    delivered = runner.invoke(args=["deliver-reminders"])

    assert sent.exit_code == 0, sent.output
    assert "Put 2 deliveries on the queue." in sent.output
    assert delivered.exit_code == 0, delivered.output
    assert "Handled 2 deliveries." in delivered.output
    assert len(outbox_messages(outbox)) == 2


def test_clock_sends_slack_notice_for_mail_task(db, settings, slack_api):
    new = settings.data_dir / "maildir" / "new"
    new.mkdir(parents=True)
    email = EmailMessage()
    email["From"] = CREATOR
    email["To"] = f"{settings.mailbox_address}, {ASSIGNEE}"
    email["Subject"] = "Projector in room 4 flickers"
    email["Message-ID"] = "<projector-4@mail.example.com>"
    email.set_content("It flickers every few seconds.")
    settle(new / "projector.eml", email.as_bytes())
    env = {
        **process_env(settings),
        "SLACK_SIGNING_SECRET": SIGNING_SECRET,
        "SLACK_BOT_TOKEN": BOT_TOKEN,
        "SLACK_API_BASE_URL": f"{slack_api.url}/api/",
        "SLACK_NOTIFY_ASSIGNEE": "true",
    }

    result = subprocess.run(
        [sys.executable, "-m", "scheduler.clock", "--once"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )

    assert result.returncode == 0, result.stderr
    task = Task.get(Task.subject == "Projector in room 4 flickers")
    assert task.assigned_to == ASSIGNEE
    posted = slack_api.calls("/api/chat.postMessage")
    assert [r.params["channel"] for r in posted] == [f"D{ASSIGNEE_ID}"]
    assert f"task #{task.id}" in posted[0].params["text"]


def test_clock_rejects_half_configured_slack(settings):
    env = {**process_env(settings), "SLACK_BOT_TOKEN": BOT_TOKEN}

    result = subprocess.run(
        [sys.executable, "-m", "scheduler.clock", "--once"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )

    assert result.returncode == 2
    assert "SLACK_SIGNING_SECRET is empty but SLACK_BOT_TOKEN is set" in result.stderr
