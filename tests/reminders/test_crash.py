"""A sender killed with SIGKILL at each point sends the reminder once."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from datetime import timedelta
from pathlib import Path

import pytest
from googleapiclient.discovery import build
from googleapiclient.http import HttpMockSequence

from core.models import Delivery
from core.outbound import GmailTransport
from core.reminders import (
    DeliveryAttempt,
    _claim,
    deliver,
    enqueue_due_reminders,
    queue_due_deliveries,
)
from scheduler.clock import tick
from scheduler.worker import build_handler
from tests.reminders.conftest import REDIS_URL, START, make_task, outbox_messages

ROOT = Path(__file__).resolve().parents[2]
DUE = START + timedelta(hours=1)


def start_crashing_worker(
    settings, mode: str, marker: Path, rq_queue: str = ""
) -> subprocess.Popen:
    env = {
        **os.environ,
        "DATA_DIR": str(settings.data_dir),
        "DATABASE_URL": settings.resolved_database_url,
        "MAILBOX_ADDRESS": settings.mailbox_address,
        "PUBLIC_BASE_URL": settings.public_base_url,
        "REDIS_URL": REDIS_URL if rq_queue else "",
        "MAIL_TRANSPORT": "outbox",
        "TRIAGE_EMAIL": settings.triage_email,
    }
    return subprocess.Popen(
        [sys.executable, "-m", "tests.reminders.crash_worker", mode, str(marker)]
        + ([rq_queue] if rq_queue else []),
        cwd=ROOT,
        env=env,
    )


def kill_when_ready(process: subprocess.Popen, marker: Path) -> None:
    deadline = time.monotonic() + 60
    while not marker.exists():
        if process.poll() is not None:
            pytest.fail(
                f"the worker exited with {process.returncode} before the kill point"
            )
        if time.monotonic() > deadline:
            process.kill()
            pytest.fail("the worker did not reach the kill point within 60 s")
        time.sleep(0.05)
    os.kill(process.pid, signal.SIGKILL)
    process.wait()


def queued_reminder(settings, make_queue) -> Delivery:
    task = make_task(criticality="high", assigned_to="")
    queue = make_queue("sqlite", consumer=False, directory=settings.resolved_queue_dir)
    tick(queue, DUE)
    queue.close()
    return Delivery.get(Delivery.task == task.id)


def restart_worker(settings, outbox, make_queue) -> int:
    queue = make_queue("sqlite", consumer=True, directory=settings.resolved_queue_dir)
    return queue.work(
        build_handler(settings, transport=outbox), burst=True, stop=threading.Event()
    )


@pytest.fixture
def triage_settings(make_settings, app):
    from core.config import use_settings

    return use_settings(make_settings(triage_email="triage@example.com"))


def test_killed_before_send_sends_once_after_restart(
    db, triage_settings, outbox, make_queue, tmp_path
):
    delivery = queued_reminder(triage_settings, make_queue)
    marker = tmp_path / "marker"

    kill_when_ready(
        start_crashing_worker(triage_settings, "before-send", marker), marker
    )
    assert outbox_messages(outbox) == []
    handled = restart_worker(triage_settings, outbox, make_queue)

    assert handled == 1
    [email] = outbox_messages(outbox)
    delivery = Delivery.get_by_id(delivery.id)
    assert delivery.status == "sent"
    assert email["Message-ID"] == delivery.message_id
    outcomes = [
        a.outcome
        for a in DeliveryAttempt.select()
        .where(DeliveryAttempt.delivery == delivery.id)
        .order_by(DeliveryAttempt.number)
    ]
    assert outcomes == ["interrupted", "sent"]


def test_killed_after_send_records_without_resending(
    db, triage_settings, outbox, make_queue, tmp_path
):
    delivery = queued_reminder(triage_settings, make_queue)
    marker = tmp_path / "marker"

    kill_when_ready(
        start_crashing_worker(triage_settings, "after-send", marker), marker
    )
    [path] = outbox.directory.glob("*.eml")
    written = path.read_bytes()
    assert Delivery.get_by_id(delivery.id).status == "sending"
    restart_worker(triage_settings, outbox, make_queue)

    [email] = outbox_messages(outbox)
    assert path.read_bytes() == written
    delivery = Delivery.get_by_id(delivery.id)
    assert delivery.status == "sent"
    assert delivery.provider_message_id == path.name


def gmail(responses):
    return build("gmail", "v1", http=HttpMockSequence(responses), cache_discovery=False)


def test_gmail_interrupted_twice_sends_at_most_one_duplicate(db, settings):
    task = make_task(criticality="high", thread_id="18c0ffee000000aa")
    enqueue_due_reminders(DUE)
    queue_due_deliveries(DUE)
    delivery = Delivery.get(
        (Delivery.task == task.id) & (Delivery.kind == "open_reminder")
    )
    # First sender: claimed the row, sent, died before recording.
    _claim(
        delivery,
        DUE,
        recipient=delivery.recipient,
        message_id="<first@tracker.example.com>",
    )
    search_empty = ({"status": "200"}, '{"resultSizeEstimate": 0}')
    sent = ({"status": "200"}, '{"id": "gmail-2"}')
    # Second sender: Gmail search does not show the first send yet, so it
    # sends again, and dies before recording too.
    resend = GmailTransport(settings, gmail([search_empty, sent]))
    resend.send = _send_then_die(resend.send)
    with pytest.raises(_Died):
        deliver(delivery.id, resend, now=DUE + timedelta(minutes=1))

    third = GmailTransport(settings, gmail([search_empty]))
    outcome = deliver(delivery.id, third, now=DUE + timedelta(minutes=2))

    assert outcome == "failed"
    delivery = Delivery.get_by_id(delivery.id)
    assert delivery.status == "failed"
    assert "at most one duplicate" in delivery.error


class _Died(BaseException):
    pass


def _send_then_die(send):
    def wrapper(outgoing):
        send(outgoing)
        raise _Died()

    return wrapper


def test_gmail_interrupted_send_found_is_not_resent(db, settings):
    task = make_task(criticality="high", thread_id="18c0ffee000000bb")
    enqueue_due_reminders(DUE)
    queue_due_deliveries(DUE)
    delivery = Delivery.get(
        (Delivery.task == task.id) & (Delivery.kind == "open_reminder")
    )
    _claim(
        delivery,
        DUE,
        recipient=delivery.recipient,
        message_id="<first@tracker.example.com>",
    )
    http = HttpMockSequence(
        [({"status": "200"}, '{"messages": [{"id": "gmail-1", "threadId": "t"}]}')]
    )
    transport = GmailTransport(
        settings, build("gmail", "v1", http=http, cache_discovery=False)
    )

    outcome = deliver(delivery.id, transport, now=DUE + timedelta(minutes=1))

    assert outcome == "sent"
    assert Delivery.get_by_id(delivery.id).provider_message_id == "gmail-1"
    assert [call[0] for call in http.request_sequence if "send" in call[0]] == []
    assert "rfc822msgid%3Afirst%40tracker.example.com" in http.request_sequence[0][0]


def test_rq_worker_killed_before_send_sends_once(
    db, triage_settings, outbox, make_queue, tmp_path
):
    from rq.registry import StartedJobRegistry

    task = make_task(criticality="high", assigned_to="")
    queue = make_queue("rq")
    tick(queue, DUE)
    marker = tmp_path / "marker"

    kill_when_ready(
        start_crashing_worker(triage_settings, "before-send", marker, queue.queue.name),
        marker,
    )
    # What RQ's maintenance does once the dead worker's heartbeat expired.
    StartedJobRegistry(queue=queue.queue).cleanup(timestamp=time.time() + 3600)
    queue.work(
        build_handler(triage_settings, transport=outbox),
        burst=True,
        stop=threading.Event(),
    )

    [email] = outbox_messages(outbox)
    delivery = Delivery.get(Delivery.task == task.id)
    assert delivery.status == "sent"
    assert email["Message-ID"] == delivery.message_id
