"""The sender: what each email looks like, when it is skipped, and failures."""

from __future__ import annotations

import base64
import json
from datetime import timedelta
from email import message_from_bytes, policy
from html import escape as html_escape
from urllib.parse import quote

import pytest
from googleapiclient.discovery import build
from googleapiclient.http import HttpMockSequence

from core.config import use_settings
from core.models import Delivery, MailMessage, Task
from core.outbound import GmailTransport
from core.reminders import (
    DeliveryAttempt,
    deliver,
    enqueue_due_reminders,
    queue_due_deliveries,
)
from core.tasks import update_task
from tests.conftest import ASSIGNEE, CREATOR, MAILBOX, actor
from tests.reminders.conftest import START, make_task, outbox_messages

DUE = START + timedelta(hours=1)


def queued_reminder(task, now=DUE) -> Delivery:
    enqueue_due_reminders(now)
    queue_due_deliveries(now)
    return Delivery.get((Delivery.task == task.id) & (Delivery.kind != "assigned"))


def gmail_service(responses):
    http = HttpMockSequence(responses)
    return build("gmail", "v1", http=http, cache_discovery=False), http


def error_body(status: int, reason: str = "backendError") -> str:
    return json.dumps(
        {"error": {"code": status, "message": "failed", "errors": [{"reason": reason}]}}
    )


def test_reminder_email_replies_in_thread(db, outbox):
    task = make_task(criticality="high", subject="Printer is jammed")
    delivery = queued_reminder(task)

    outcome = deliver(delivery.id, outbox, now=DUE)

    assert outcome == "sent"
    [email] = outbox_messages(outbox)
    assert email["To"] == ASSIGNEE
    assert email["From"] == MAILBOX
    assert email["Subject"] == "Re: Printer is jammed"
    assert email["In-Reply-To"] == task.latest_message_id
    assert email["References"] == task.latest_message_id
    assert email["Auto-Submitted"] == "auto-generated"
    assert email["X-Auto-Response-Suppress"] == "All"
    assert email["X-Threadtask-Delivery"] == str(delivery.id)
    text = email.get_body(("plain",)).get_content()
    html = email.get_body(("html",)).get_content()
    assert "Status: open" in text
    assert "Criticality: high" in text
    assert f"Assignee: {ASSIGNEE}" in text
    thread = quote(task.thread_id, safe="")
    link = f"http://127.0.0.1:8000/addon/preview?thread_id={thread}"
    assert link in text
    assert f'href="{html_escape(link)}"' in html


def test_sent_delivery_is_recorded(db, outbox):
    task = make_task(criticality="high")
    delivery = queued_reminder(task)

    deliver(delivery.id, outbox, now=DUE)

    delivery = Delivery.get_by_id(delivery.id)
    [email] = outbox_messages(outbox)
    assert delivery.status == "sent"
    assert delivery.sent_at == DUE
    assert delivery.attempts == 1
    assert delivery.provider_message_id == f"{delivery.id:08d}.eml"
    assert delivery.message_id == email["Message-ID"]
    out = MailMessage.get(MailMessage.message_id == delivery.message_id)
    assert out.direction == "out"
    assert out.outcome == "sent"
    assert out.task_id == task.id
    assert Task.get_by_id(task.id).last_reminder_at == DUE


def test_header_injection_is_impossible(db, outbox):
    task = make_task(criticality="high")
    Task.update(
        subject="Hello\r\nBcc: victim@example.org",
        latest_message_id="<a@b>\r\nX-Evil: 1",
    ).where(Task.id == task.id).execute()
    delivery = queued_reminder(task)

    deliver(delivery.id, outbox, now=DUE)

    [email] = outbox_messages(outbox)
    assert email["Bcc"] is None
    assert email["X-Evil"] is None
    assert email["Subject"] == "Re: Hello Bcc: victim@example.org"


def test_reply_subject_not_prefixed_twice(db, outbox):
    task = make_task(criticality="high", subject="RE: quarterly numbers")
    delivery = queued_reminder(task)

    deliver(delivery.id, outbox, now=DUE)

    [email] = outbox_messages(outbox)
    assert email["Subject"] == "RE: quarterly numbers"


def test_task_closed_while_queued_sends_nothing(db, outbox):
    task = make_task(criticality="high")
    delivery = queued_reminder(task)
    update_task(actor(CREATOR), task.id, {"status": "closed"}, now=DUE)

    outcome = deliver(delivery.id, outbox, now=DUE + timedelta(minutes=1))

    assert outcome == "ignored"
    assert outbox_messages(outbox) == []
    delivery = Delivery.get_by_id(delivery.id)
    assert delivery.status == "skipped"
    assert delivery.error.startswith("The task became closed before this reminder")


def test_closed_task_skipped_at_send(db, outbox):
    # Closed by a write that bypassed the task rules: the sender still checks.
    task = make_task(criticality="high")
    delivery = queued_reminder(task)
    Task.update(status="closed").where(Task.id == task.id).execute()

    outcome = deliver(delivery.id, outbox, now=DUE + timedelta(minutes=1))

    assert outcome == "skipped"
    assert outbox_messages(outbox) == []
    assert Delivery.get_by_id(delivery.id).error == "The task is closed."


def test_status_changed_while_queued_is_skipped(db, outbox):
    task = make_task(criticality="high")
    delivery = queued_reminder(task)
    Task.update(status="fixed").where(Task.id == task.id).execute()

    outcome = deliver(delivery.id, outbox, now=DUE)

    assert outcome == "skipped"
    assert Delivery.get_by_id(delivery.id).error == "The task is fixed now, not open."


def test_reopened_while_queued_not_sent(db, outbox):
    task = make_task(criticality="high")
    delivery = queued_reminder(task)
    update_task(actor(ASSIGNEE), task.id, {"status": "fixed"}, now=DUE)
    update_task(actor(ASSIGNEE), task.id, {"status": "open"}, now=DUE)

    outcome = deliver(delivery.id, outbox, now=DUE + timedelta(minutes=1))

    assert outcome == "ignored"
    assert outbox_messages(outbox) == []
    assert "fresh interval" in Delivery.get_by_id(delivery.id).error
    assert Task.get_by_id(task.id).next_reminder_at == DUE + timedelta(hours=1)


def test_reassigned_while_queued_gets_notice_only(db, outbox):
    task = make_task(criticality="high")
    delivery = queued_reminder(task)
    update_task(actor(CREATOR), task.id, {"assigned_to": CREATOR}, now=DUE)

    for pending in queue_due_deliveries(DUE):
        deliver(pending, outbox, now=DUE)
    deliver(delivery.id, outbox, now=DUE)

    [email] = outbox_messages(outbox)[-1:]
    assert (
        "You have been assigned this task" in email.get_body(("plain",)).get_content()
    )
    assert str(email["To"]) == CREATOR
    reminder = Delivery.get_by_id(delivery.id)
    assert reminder.status == "skipped"
    assert "reassigned" in reminder.error


def test_recent_reminder_skips_the_next(db, outbox):
    task = make_task(criticality="high")
    delivery = queued_reminder(task)
    Task.update(last_reminder_at=DUE - timedelta(minutes=10)).where(
        Task.id == task.id
    ).execute()

    outcome = deliver(delivery.id, outbox, now=DUE)

    assert outcome == "skipped"
    assert "less than the interval of 1:00:00 before" in (
        Delivery.get_by_id(delivery.id).error
    )


def test_same_delivery_twice_sends_once(db, outbox):
    task = make_task(criticality="high")
    delivery = queued_reminder(task)

    first = deliver(delivery.id, outbox, now=DUE)
    second = deliver(delivery.id, outbox, now=DUE)

    assert (first, second) == ("sent", "ignored")
    assert len(outbox_messages(outbox)) == 1


def test_assignment_notice_goes_to_new_assignee(db, outbox):
    task = make_task(assigned_to="")
    update_task(actor(CREATOR), task.id, {"assigned_to": ASSIGNEE}, now=START)

    [delivery_id] = queue_due_deliveries(START)
    outcome = deliver(delivery_id, outbox, now=START)

    assert outcome == "sent"
    [email] = outbox_messages(outbox)
    assert email["To"] == ASSIGNEE
    assert "You have been assigned this task, please check." in (
        email.get_body(("plain",)).get_content()
    )
    assert Task.get_by_id(task.id).last_reminder_at is None


def test_reassigned_notice_is_not_sent(db, outbox):
    task = make_task(assigned_to=ASSIGNEE)
    update_task(actor(CREATOR), task.id, {"assigned_to": "ben@example.com"}, now=START)
    notices = [d.id for d in Delivery.select().order_by(Delivery.id)]
    queue_due_deliveries(START)

    outcomes = [deliver(delivery_id, outbox, now=START) for delivery_id in notices]

    assert outcomes == ["ignored", "sent"]
    [email] = outbox_messages(outbox)
    assert email["To"] == "ben@example.com"


def test_notice_claimed_after_reassignment_is_skipped(db, outbox):
    task = make_task(assigned_to=ASSIGNEE)
    [delivery_id] = queue_due_deliveries(START)
    # The assignee changes between the queue and the send, in a way that
    # leaves the queued notice in place.
    Task.update(assigned_to="ben@example.com").where(Task.id == task.id).execute()

    outcome = deliver(delivery_id, outbox, now=START)

    assert outcome == "skipped"
    assert outbox_messages(outbox) == []


def test_gmail_500_twice_then_success(db, settings):
    use_settings(settings.model_copy(update={"mail_transport": "gmail"}))
    task = make_task(criticality="high", thread_id="18c0ffee00000001")
    service, http = gmail_service(
        [
            ({"status": "500"}, error_body(500)),
            ({"status": "500"}, error_body(500)),
            (
                {"status": "200"},
                json.dumps({"id": "msg-1", "threadId": task.thread_id}),
            ),
        ]
    )
    transport = GmailTransport(settings, service)
    delivery = queued_reminder(task)

    outcomes = [deliver(delivery.id, transport, now=DUE)]
    for minutes in (2, 8):
        later = DUE + timedelta(minutes=minutes)
        queue_due_deliveries(later)
        outcomes.append(deliver(delivery.id, transport, now=later))

    assert outcomes == ["retry", "retry", "sent"]
    delivery = Delivery.get_by_id(delivery.id)
    assert delivery.status == "sent"
    assert delivery.attempts == 3
    assert delivery.provider_message_id == "msg-1"
    attempts = list(
        DeliveryAttempt.select()
        .where(DeliveryAttempt.delivery == delivery.id)
        .order_by(DeliveryAttempt.number)
    )
    assert [a.outcome for a in attempts] == ["retry", "retry", "sent"]
    sends = [call for call in http.request_sequence if "messages/send" in call[0]]
    assert len(sends) == 3
    body = json.loads(sends[-1][2])
    assert body["threadId"] == task.thread_id
    email = message_from_bytes(
        base64.urlsafe_b64decode(body["raw"]), policy=policy.default
    )
    assert email["Message-ID"] == delivery.message_id


def test_retry_waits_for_its_delay(db, settings):
    task = make_task(criticality="high", thread_id="18c0ffee00000002")
    service, _ = gmail_service([({"status": "503"}, error_body(503))])
    delivery = queued_reminder(task)

    deliver(delivery.id, GmailTransport(settings, service), now=DUE)

    assert queue_due_deliveries(DUE + timedelta(seconds=30)) == []
    assert queue_due_deliveries(DUE + timedelta(seconds=61)) == [delivery.id]


def test_gmail_failures_stop_at_max_attempts(db, settings, caplog):
    task = make_task(criticality="high", thread_id="18c0ffee00000003")
    service, _ = gmail_service(
        [({"status": "429"}, error_body(429, "rateLimitExceeded"))] * 3
    )
    transport = GmailTransport(settings, service)
    delivery = queued_reminder(task)

    later = DUE
    outcomes = []
    for _ in range(3):
        queue_due_deliveries(later)
        outcomes.append(deliver(delivery.id, transport, now=later))
        later += timedelta(hours=1)

    assert outcomes == ["retry", "retry", "failed"]
    delivery = Delivery.get_by_id(delivery.id)
    assert delivery.status == "failed"
    assert "HTTP 429" in delivery.error
    errors = [r for r in caplog.records if r.levelname == "ERROR"]
    assert f"task {task.id}" in errors[-1].getMessage()


def test_gmail_invalid_recipient_is_permanent(db, settings):
    task = make_task(criticality="high", thread_id="18c0ffee00000004")
    service, http = gmail_service(
        [({"status": "400"}, error_body(400, "invalidArgument"))]
    )
    delivery = queued_reminder(task)

    outcome = deliver(delivery.id, GmailTransport(settings, service), now=DUE)

    assert outcome == "failed"
    delivery = Delivery.get_by_id(delivery.id)
    assert delivery.status == "failed"
    assert delivery.attempts == 1
    assert queue_due_deliveries(DUE + timedelta(days=1)) == []


@pytest.mark.parametrize(
    ("thread_id", "sends_thread_id"),
    [("18c0ffee00000005", True), ("<root@mail.example.com>", False)],
)
def test_gmail_thread_id_only_when_gmail_id(db, settings, thread_id, sends_thread_id):
    task = make_task(criticality="high", thread_id=thread_id)
    service, http = gmail_service([({"status": "200"}, "echo_request_body")])
    delivery = queued_reminder(task)

    deliver(delivery.id, GmailTransport(settings, service), now=DUE)

    body = json.loads(http.request_sequence[-1][2])
    assert ("threadId" in body) is sends_thread_id


def test_reminder_history_in_task_api(client, as_creator, outbox):
    task = make_task(criticality="high")
    delivery = queued_reminder(task)
    deliver(delivery.id, outbox, now=DUE)

    response = client.get(f"/tasks/{task.id}", headers=as_creator)

    assert response.status_code == 200
    reminders = {item["kind"]: item for item in response.get_json()["reminders"]}
    assert reminders["open_reminder"]["status"] == "sent"
    assert reminders["open_reminder"]["recipient"] == ASSIGNEE
    assert reminders["open_reminder"]["attempts"] == 1
    assert reminders["open_reminder"]["provider_message_id"] == f"{delivery.id:08d}.eml"
    assert reminders["assigned"]["status"] == "queued"


def test_non_ascii_subject_sent_as_8bit(db, outbox):
    task = make_task(criticality="high", subject="Drucker klemmt – bitte prüfen")
    delivery = queued_reminder(task)

    deliver(delivery.id, outbox, now=DUE)

    [email] = outbox_messages(outbox)
    plain = email.get_body(("plain",))
    assert email["Subject"] == "Re: Drucker klemmt – bitte prüfen"
    assert plain["Content-Transfer-Encoding"] == "8bit"
    assert "Task: Drucker klemmt – bitte prüfen" in plain.get_content()
    assert "Drucker klemmt – bitte prüfen" in email.get_body(("html",)).get_content()


def test_line_too_long_for_smtp_sent_as_base64(db, outbox):
    # The longest subject a task takes makes its "Task: ..." line too long.
    subject = ("Printer jammed again " * 50)[:998].strip()
    task = make_task(criticality="high", subject=subject)
    delivery = queued_reminder(task)

    deliver(delivery.id, outbox, now=DUE)

    [path] = outbox.directory.glob("*.eml")
    [email] = outbox_messages(outbox)
    plain = email.get_body(("plain",))
    assert max(len(line) for line in path.read_bytes().splitlines()) <= 998
    assert plain["Content-Transfer-Encoding"] == "base64"
    assert f"Task: {subject}" in plain.get_content()


def test_recipient_outside_allowed_domains_skipped(db, outbox, make_settings):
    # The task was stored before ALLOWED_EMAIL_DOMAINS was narrowed.
    task = make_task(criticality="high")
    delivery = queued_reminder(task)
    use_settings(make_settings(allowed_email_domains="example.org"))

    outcome = deliver(delivery.id, outbox, now=DUE)

    assert outcome == "skipped"
    assert outbox_messages(outbox) == []
    error = Delivery.get_by_id(delivery.id).error
    assert error == (
        f"The recipient {ASSIGNEE} is outside ALLOWED_EMAIL_DOMAINS (example.org)."
    )


def test_notice_outside_allowed_domains_skipped(db, outbox, make_settings):
    task = make_task(criticality="high")
    [notice] = Delivery.select().where(Delivery.task == task.id)
    queue_due_deliveries(START)
    use_settings(make_settings(allowed_email_domains="example.org"))

    assert deliver(notice.id, outbox, now=START) == "skipped"
    assert outbox_messages(outbox) == []


def test_outbox_keeps_email_of_reused_id(db, outbox):
    task = make_task(criticality="high")
    delivery = queued_reminder(task)
    # An email left by a deleted delivery that had the same id.
    outbox.directory.mkdir(parents=True, exist_ok=True)
    earlier = outbox.path_for(delivery.id)
    earlier.write_bytes(b"Message-ID: <old@tracker.example.com>\r\n\r\nold\r\n")

    assert deliver(delivery.id, outbox, now=DUE) == "sent"

    renamed = earlier.with_name(f"{earlier.stem}.earlier-1.eml")
    assert renamed.read_bytes().startswith(b"Message-ID: <old@tracker.example.com>")
    sent = Delivery.get_by_id(delivery.id)
    assert str(message_from_bytes(earlier.read_bytes())["Message-ID"]) == (
        sent.message_id
    )
