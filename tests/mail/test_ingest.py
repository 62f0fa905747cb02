"""From an email in the Maildir to a task, on SQLite and PostgreSQL."""

from __future__ import annotations

import json
import os
import socket
import stat
import subprocess
import sys
import threading
import uuid
from datetime import datetime

from freezegun import freeze_time

from core import tasks
from core.db import database
from core.mail import poll_mailbox_once
from core.mail.ingest import ingest_message
from core.mail.maildir import SETTLE_SECONDS
from core.mail.mailbox import IncomingMessage
from core.mail.models import QuarantinedMessage
from core.mail.poll import LOCK_KEY, LockHolder
from core.models import Delivery, Event, MailMessage, SyncState, Task
from tests.conftest import ADMIN, ASSIGNEE, CREATOR, MAILBOX
from tests.mail.conftest import make_email, settle

STRANGER_BOT = "robot@example.org"


def poll(settings) -> int:
    return poll_mailbox_once(settings)


def test_new_thread_creates_task(db, settings, maildir):
    name = maildir.drop(make_email(message_id="<first@client.example.com>"))

    handled = poll(settings)

    assert handled == 1
    task = Task.get()
    assert task.creator_email == CREATOR
    assert task.assigned_to == ASSIGNEE
    assert task.subject == "Printer on floor 2 is jammed"
    assert task.thread_id == "<first@client.example.com>"
    assert task.latest_message_id == "<first@client.example.com>"
    assert "It jams on every second page." in task.html
    assert task.status == "open"
    assert maildir.new() == []
    assert maildir.cur() == [name + ":2,S"]
    row = MailMessage.get()
    assert row.outcome == "created"
    assert row.task_id == task.id
    assert row.direction == "in"


def test_maildir_made_by_hand_works(db, settings):
    new = settings.resolved_maildir / "new"
    new.mkdir(parents=True)
    settle(new / "printer.eml", make_email())

    handled = poll(settings)

    assert handled == 1
    assert Task.select().count() == 1
    assert list(new.iterdir()) == []
    assert (settings.resolved_maildir / "cur" / "printer.eml:2,S").exists()


def test_new_thread_event_names_mail_channel(db, settings, maildir):
    maildir.drop(make_email())

    poll(settings)

    event = Event.get(Event.field == "created")
    assert event.channel == "mail"
    assert event.actor == CREATOR


def test_assignee_is_cc_when_tracker_in_to(db, settings, maildir):
    maildir.drop(
        make_email(to=f"Tracker <{MAILBOX}>", cc=f"{CREATOR}, Alex <{ASSIGNEE}>")
    )

    poll(settings)

    assert Task.get().assigned_to == ASSIGNEE


def test_assignee_empty_without_colleague(db, settings, maildir):
    maildir.drop(make_email(to=MAILBOX, cc=CREATOR))

    poll(settings)

    assert Task.get().assigned_to == ""


def test_empty_to_header_creates_unassigned(db, settings, maildir):
    raw = make_email(to=None, headers={"To": "<>", "Cc": MAILBOX})

    maildir.drop(raw)
    poll(settings)

    task = Task.get()
    assert task.assigned_to == ""
    assert task.creator_email == CREATOR


def test_text_only_body_is_escaped(db, settings, maildir):
    maildir.drop(make_email(body="a < b & <script>alert(1)</script>\nsecond line"))

    poll(settings)

    html = Task.get().html
    assert "&lt;script&gt;" in html
    assert "<script>" not in html
    assert "a &lt; b &amp;" in html
    assert "\nsecond line" in html


def test_empty_html_part_uses_text(db, settings, maildir):
    raw = make_email(
        body="The text part says it all.", html="<html><body> </body></html>"
    )

    maildir.drop(raw)
    poll(settings)

    assert "The text part says it all." in Task.get().html


def test_nul_bytes_are_dropped(db, settings, maildir):
    raw = make_email(subject="Disk\0 full", body="see\0 attached")

    maildir.drop(raw)
    poll(settings)

    task = Task.get()
    assert task.subject == "Disk full"
    assert "see attached" in task.html


def test_html_part_is_sanitized(db, settings, maildir):
    html = '<p onclick="steal()">Hi <b>team</b></p><script>steal()</script>'

    maildir.drop(make_email(html=html))
    poll(settings)

    stored = Task.get().html
    assert "<b>team</b>" in stored
    assert "onclick" not in stored
    assert "script" not in stored


def test_reply_updates_body_and_latest_id(db, settings, maildir):
    maildir.drop(make_email(message_id="<q1@client.example.com>"))
    poll(settings)
    task = Task.get()
    tasks.update_task(tasks.Actor(ASSIGNEE, "api"), task.id, {"status": "fixed"})

    maildir.drop(
        make_email(
            sender=ASSIGNEE,
            subject="Re: Printer on floor 2 is jammed",
            body="Still broken, reopening?",
            message_id="<r1@client.example.com>",
            in_reply_to="<q1@client.example.com>",
            references="<q1@client.example.com>",
        )
    )
    poll(settings)

    task = Task.get()
    assert Task.select().count() == 1
    assert task.latest_message_id == "<r1@client.example.com>"
    assert "Still broken" in task.html
    assert task.status == "fixed"
    fields = [e.field for e in Event.select().where(Event.actor == ASSIGNEE)]
    assert "html" in fields
    assert "latest_message_id" in fields
    assert "status" in fields  # the API change above, not the reply
    assert (
        MailMessage.get(MailMessage.message_id == "<r1@client.example.com>").outcome
        == "updated"
    )


def test_reply_never_reopens_closed_task(db, settings, maildir):
    maildir.drop(make_email(message_id="<c1@client.example.com>"))
    poll(settings)
    task = Task.get()
    tasks.update_task(tasks.Actor(CREATOR, "api"), task.id, {"status": "closed"})

    maildir.drop(make_email(sender=ASSIGNEE, in_reply_to="<c1@client.example.com>"))
    poll(settings)

    assert Task.get().status == "closed"


def test_references_join_despite_new_subject(db, settings, maildir):
    maildir.drop(make_email(message_id="<a@client.example.com>"))
    maildir.drop(
        make_email(
            sender=ASSIGNEE,
            message_id="<b@client.example.com>",
            in_reply_to="<a@client.example.com>",
            references="<a@client.example.com>",
        )
    )
    poll(settings)

    maildir.drop(
        make_email(
            sender="dana@example.com",
            subject="Toner order for the second floor",
            message_id="<c@other.example.net>",
            in_reply_to="<unknown@elsewhere.example>",
            references="<a@client.example.com> <b@client.example.com> <unknown@elsewhere.example>",
        )
    )
    poll(settings)

    assert Task.select().count() == 1
    task = Task.get()
    assert task.latest_message_id == "<c@other.example.net>"
    assert task.subject == "Printer on floor 2 is jammed"


def test_same_subject_alone_never_joins(db, settings, maildir):
    maildir.drop(make_email(message_id="<s1@client.example.com>"))
    maildir.drop(make_email(sender=ASSIGNEE, message_id="<s2@client.example.com>"))

    poll(settings)

    assert Task.select().count() == 2


def test_reply_before_its_parent_joins(db, settings, maildir):
    maildir.drop(
        make_email(
            sender=ASSIGNEE,
            message_id="<late-reply@client.example.com>",
            in_reply_to="<root@client.example.com>",
            references="<root@client.example.com>",
        )
    )
    poll(settings)
    maildir.drop(make_email(message_id="<root@client.example.com>"))
    poll(settings)

    assert Task.select().count() == 1
    assert Task.get().thread_id == "<root@client.example.com>"


def test_reply_to_deleted_task_is_ignored(db, settings, maildir):
    maildir.drop(make_email(message_id="<gone@client.example.com>"))
    poll(settings)
    tasks.delete_task(tasks.Actor(ADMIN, "api"), Task.get().id)

    maildir.drop(make_email(sender=ASSIGNEE, in_reply_to="<gone@client.example.com>"))
    poll(settings)

    assert Task.select().count() == 0
    row = MailMessage.get(MailMessage.sender == ASSIGNEE)
    assert row.outcome == "ignored"
    assert "deleted" in row.reason


def test_same_file_twice_creates_once(db, settings, maildir):
    raw = make_email(message_id="<dup@client.example.com>")
    maildir.drop(raw, name="one.eml")
    maildir.drop(raw, name="two.eml")

    handled = poll(settings)

    assert handled == 2
    assert Task.select().count() == 1
    assert MailMessage.select().count() == 1
    assert maildir.new() == []


def test_redelivery_by_other_route_creates_once(db, settings, maildir):
    raw = make_email(message_id="<dup@client.example.com>")
    maildir.drop(raw, name="one.eml")
    maildir.drop(b"Received: from relay2.example.net\r\n" + raw, name="two.eml")

    poll(settings)

    assert Task.select().count() == 1
    assert MailMessage.select().count() == 1


def test_reused_message_id_reads_new_email(db, settings, maildir, caplog):
    maildir.drop(make_email(message_id="<fixed@broken.example.com>"), name="a.eml")
    other = make_email(
        sender=ASSIGNEE,
        to=MAILBOX,
        subject="Coffee machine leaks",
        body="Water all over the floor.",
        message_id="<fixed@broken.example.com>",
    )
    maildir.drop(other, name="b.eml")

    poll(settings)
    maildir.drop(other, name="c.eml")
    poll(settings)

    subjects = sorted(task.subject for task in Task.select())
    assert subjects == ["Coffee machine leaks", "Printer on floor 2 is jammed"]
    second = Task.get(Task.subject == "Coffee machine leaks")
    assert second.creator_email == ASSIGNEE
    assert second.thread_id.endswith("@threadtask.invalid>")
    assert second.latest_message_id == second.thread_id
    assert MailMessage.select().count() == 2
    assert maildir.new() == []
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert len(warnings) == 1
    assert "<fixed@broken.example.com>" in warnings[0]


def test_message_without_id_gets_stable_id(db, settings, maildir):
    raw = make_email(message_id="")
    maildir.drop(raw, name="a.eml")
    maildir.drop(raw, name="b.eml")

    poll(settings)

    task = Task.get()
    assert Task.select().count() == 1
    assert task.thread_id.endswith("@threadtask.invalid>")
    assert task.thread_id == task.latest_message_id


def test_killed_before_acknowledge_creates_once(db, settings, maildir):
    maildir.drop(make_email(message_id="<crash@client.example.com>"))
    maildir.drop(make_email(sender=ASSIGNEE, message_id="<crash2@client.example.com>"))
    # The reader stores both messages, then dies before moving them to cur/.
    for incoming in list(maildir.mailbox.messages()):
        ingest_message(incoming, settings)
    assert len(maildir.new()) == 2

    handled = poll(settings)

    assert handled == 2
    assert Task.select().count() == 2
    assert Event.select().where(Event.field == "created").count() == 2
    assert maildir.new() == []


def test_attachments_recorded_as_metadata(db, settings, maildir):
    raw = make_email()
    from email import message_from_bytes, policy

    message = message_from_bytes(raw, policy=policy.default)
    message.add_attachment(
        b"%PDF-1.4 fake", maintype="application", subtype="pdf", filename="Grüße.pdf"
    )
    maildir.drop(message.as_bytes())

    poll(settings)

    attachments = json.loads(MailMessage.get().attachments)
    assert attachments == [
        {"name": "Grüße.pdf", "type": "application/pdf", "size": 13, "inline": False}
    ]


# Machines: never a task, never a reply


def reminder_task(settings, maildir):
    """Create a task from mail and a reminder the sender delivered for it."""
    maildir.drop(make_email(message_id="<origin@client.example.com>"))
    poll(settings)
    task = Task.get()
    delivery = Delivery.create(
        task=task,
        kind="reminder",
        recipient=ASSIGNEE,
        status="sent",
        message_id="<reminder-1@threadtask.example.com>",
    )
    MailMessage.create(
        message_id="<reminder-1@threadtask.example.com>",
        direction="out",
        task=task,
        thread_id=task.thread_id,
    )
    return task, delivery


def test_out_of_office_reply_to_reminder_ignored(db, settings, maildir):
    task, _ = reminder_task(settings, maildir)
    before = Task.get_by_id(task.id)

    maildir.drop(
        make_email(
            sender=ASSIGNEE,
            to=MAILBOX,
            subject="Automatic reply: Reminder: Printer on floor 2 is jammed",
            body="I am out of the office until Monday.",
            in_reply_to="<reminder-1@threadtask.example.com>",
            references="<origin@client.example.com> <reminder-1@threadtask.example.com>",
            headers={"Auto-Submitted": "auto-replied"},
        )
    )
    poll(settings)

    after = Task.get_by_id(task.id)
    assert after.version == before.version
    assert after.html == before.html
    row = MailMessage.get(MailMessage.sender == ASSIGNEE)
    assert row.outcome == "ignored"
    assert "Auto-Submitted" in row.reason
    assert row.task_id == task.id


def test_reply_to_auto_reply_joins_task(db, settings, maildir):
    task, _ = reminder_task(settings, maildir)
    maildir.drop(
        make_email(
            sender=ASSIGNEE,
            to=MAILBOX,
            subject="Automatic reply: Reminder",
            message_id="<ooo@mail.example.com>",
            in_reply_to="<reminder-1@threadtask.example.com>",
            headers={"X-Autoreply": "yes"},
        )
    )
    poll(settings)

    maildir.drop(
        make_email(
            sender="dana@example.com",
            subject="Who covers for Alex?",
            message_id="<cover@client.example.com>",
            in_reply_to="<ooo@mail.example.com>",
            references="<ooo@mail.example.com>",
        )
    )
    poll(settings)

    assert Task.select().count() == 1
    assert Task.get_by_id(task.id).latest_message_id == "<cover@client.example.com>"


def test_vacation_by_subject_only_ignored(db, settings, maildir):
    maildir.drop(make_email(subject="Out of Office: back on the 5th"))

    poll(settings)

    assert Task.select().count() == 0
    assert "auto-reply" in MailMessage.get().reason


def test_bounce_of_reminder_fails_delivery(db, settings, maildir):
    task, delivery = reminder_task(settings, maildir)
    original = make_email(
        sender=MAILBOX,
        to="gone@example.com",
        subject="Reminder: Printer on floor 2 is jammed",
        message_id="<reminder-1@threadtask.example.com>",
        headers={
            "X-Threadtask-Delivery": str(delivery.id),
            "Auto-Submitted": "auto-generated",
        },
    )
    maildir.drop(dsn_bounce(original, "gone@example.com"))

    poll(settings)

    delivery = Delivery.get_by_id(delivery.id)
    assert delivery.status == "failed"
    assert "5.1.1" in delivery.error
    assert "User unknown" in delivery.error
    event = Event.get(Event.field == "delivery")
    assert event.task_id == task.id
    assert event.channel == "mail"
    assert "failed" in event.new_value
    assert Task.select().count() == 1
    row = MailMessage.get(MailMessage.sender == "mailer-daemon@mx.example.com")
    assert row.outcome == "ignored"
    assert row.task_id == task.id


def test_delay_warning_keeps_delivery(db, settings, maildir):
    _, delivery = reminder_task(settings, maildir)
    original = make_email(
        sender=MAILBOX, message_id="<reminder-1@threadtask.example.com>"
    )

    maildir.drop(
        dsn_bounce(original, "slow@example.com", action="delayed", status="4.4.7")
    )
    poll(settings)

    assert Delivery.get_by_id(delivery.id).status == "sent"
    assert "delayed" in Event.get(Event.field == "delivery").new_value


def test_unrelated_bounce_ignored(db, settings, maildir):
    original = make_email(sender=CREATOR, message_id="<not-ours@client.example.com>")

    maildir.drop(dsn_bounce(original, "x@example.com"))
    poll(settings)

    assert Task.select().count() == 0
    row = MailMessage.get()
    assert row.outcome == "ignored"
    assert row.task_id is None


def test_own_reminder_read_back_ignored(db, settings, maildir):
    task, delivery = reminder_task(settings, maildir)
    before = Task.get_by_id(task.id)

    maildir.drop(
        make_email(
            sender=MAILBOX,
            to=ASSIGNEE,
            subject="Reminder: Printer on floor 2 is jammed",
            message_id="<reminder-1@threadtask.example.com>",
            in_reply_to="<origin@client.example.com>",
            headers={
                "X-Threadtask-Delivery": str(delivery.id),
                "Auto-Submitted": "auto-generated",
            },
        )
    )
    handled = poll(settings)

    assert handled == 1
    assert Task.get_by_id(task.id).version == before.version
    row = MailMessage.get(
        MailMessage.message_id == "<reminder-1@threadtask.example.com>"
    )
    assert row.direction == "out"
    assert row.outcome == "ignored"
    assert "threadtask" in row.reason
    assert MailMessage.select().count() == 2


def test_unknown_delivery_header_not_trusted(db, settings, maildir, caplog):
    maildir.drop(
        make_email(
            sender=CREATOR,
            message_id="<forged@client.example.com>",
            headers={"X-Threadtask-Delivery": "77"},
        )
    )

    poll(settings)

    assert Task.get().creator_email == CREATOR
    assert MailMessage.get().outcome == "created"
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert any("X-Threadtask-Delivery" in message for message in warnings)


def test_delivery_header_with_other_id_not_trusted(db, settings, maildir):
    task, delivery = reminder_task(settings, maildir)

    maildir.drop(
        make_email(
            sender=STRANGER_BOT,
            message_id="<new-problem@client.example.org>",
            headers={"X-Threadtask-Delivery": str(delivery.id)},
        )
    )
    poll(settings)

    assert Task.select().count() == 2
    assert Task.get(Task.id != task.id).creator_email == STRANGER_BOT


def test_delivery_header_read_before_sender_records(db, settings, maildir):
    task, delivery = reminder_task(settings, maildir)
    MailMessage.delete().where(MailMessage.direction == "out").execute()

    maildir.drop(
        make_email(
            sender=MAILBOX,
            to=ASSIGNEE,
            message_id="<reminder-1@threadtask.example.com>",
            headers={"X-Threadtask-Delivery": str(delivery.id)},
        )
    )
    poll(settings)

    assert Task.select().count() == 1
    row = MailMessage.get(
        MailMessage.message_id == "<reminder-1@threadtask.example.com>"
    )
    assert row.outcome == "ignored"
    assert "X-Threadtask-Delivery" in row.reason


def test_own_message_id_alone_is_ignored(db, settings, maildir):
    task, _ = reminder_task(settings, maildir)

    # A copy with the header stripped by some relay, and a forged From.
    maildir.drop(
        make_email(
            sender="someone@example.net",
            message_id="<reminder-1@threadtask.example.com>",
        )
    )
    poll(settings)

    assert Task.select().count() == 1
    assert Task.get_by_id(task.id).latest_message_id == "<origin@client.example.com>"


def test_mail_from_tracker_address_ignored(db, settings, maildir):
    maildir.drop(make_email(sender=f"Tracker <{MAILBOX}>"))

    poll(settings)

    assert Task.select().count() == 0


def test_list_mail_ignored(db, settings, maildir):
    maildir.drop(
        make_email(headers={"Precedence": "list", "List-Id": "<team.example.com>"})
    )

    poll(settings)

    assert Task.select().count() == 0
    assert "Precedence: list" in MailMessage.get().reason


def test_domain_outside_allowed_is_ignored(make_settings, app, maildir):
    settings = make_settings(allowed_email_domains=("example.org",))
    from core.config import use_settings

    use_settings(settings)
    maildir.drop(make_email(sender="carol@example.com"))

    poll(settings)

    assert Task.select().count() == 0
    assert "ALLOWED_EMAIL_DOMAINS" in MailMessage.get().reason


# Quarantine


def test_oversized_message_quarantined(make_settings, app, maildir):
    settings = make_settings(max_message_bytes=2000)
    maildir.drop(make_email(body="x" * 3000))
    maildir.drop(make_email(sender=ASSIGNEE, body="short"))

    handled = poll(settings)

    assert handled == 2
    assert Task.select().count() == 1
    row = QuarantinedMessage.get()
    assert "MAX_MESSAGE_BYTES=2000" in row.error
    assert open(row.raw_path, "rb").read().startswith(b"From: carol@example.com")
    assert row.raw_path.startswith(str(settings.data_dir / "quarantine"))
    assert MailMessage.get(MailMessage.outcome == "quarantined").reason == row.error
    assert maildir.new() == []


def test_file_being_written_left_for_next_poll(db, settings, maildir):
    name = maildir.drop(make_email(subject="Half-writ"))
    path = maildir.path / "new" / name
    # The file was modified just now, as by a `cp` still running.
    os.utime(path)

    first = poll(settings)
    modified = path.stat().st_mtime - SETTLE_SECONDS - 1
    os.utime(path, (modified, modified))
    second = poll(settings)

    assert first == 0
    assert second == 1
    assert Task.get().subject == "Half-writ"
    assert maildir.new() == []


def test_quarantine_readable_by_owner_only(make_settings, app, maildir):
    settings = make_settings(max_message_bytes=2000)
    maildir.drop(make_email(body="x" * 3000))
    previous = os.umask(0o022)
    try:
        poll(settings)
    finally:
        os.umask(previous)

    row = QuarantinedMessage.get()
    assert stat.S_IMODE(os.stat(settings.quarantine_dir).st_mode) == 0o700
    assert stat.S_IMODE(os.stat(row.raw_path).st_mode) == 0o600


def test_store_failure_quarantines_and_continues(
    db, settings, maildir, backend, caplog
):
    install_poison_trigger(db, backend)
    maildir.drop(make_email(subject="poison", message_id="<poison@client.example.com>"))
    maildir.drop(make_email(sender=ASSIGNEE, message_id="<fine@client.example.com>"))

    handled = poll(settings)

    assert handled == 2
    assert [t.latest_message_id for t in Task.select()] == ["<fine@client.example.com>"]
    row = QuarantinedMessage.get()
    assert row.message_id == "<poison@client.example.com>"
    assert row.error.startswith("Storing failed")
    assert maildir.new() == []
    errors = [r for r in caplog.records if r.levelname == "ERROR"]
    assert any("<poison@client.example.com>" in r.getMessage() for r in errors)

    # The quarantined message is not retried on the next poll.
    maildir.drop(make_email(subject="poison", message_id="<poison@client.example.com>"))
    poll(settings)
    assert QuarantinedMessage.select().count() == 1


def install_poison_trigger(db, backend: str) -> None:
    """Make the database itself reject one task, as a real failure would."""
    if backend == "sqlite":
        db.execute_sql(
            "CREATE TRIGGER poison BEFORE INSERT ON task WHEN NEW.subject = 'poison' "
            "BEGIN SELECT RAISE(ABORT, 'poison message'); END"
        )
        return
    db.execute_sql(
        "CREATE OR REPLACE FUNCTION poison() RETURNS trigger AS $$ BEGIN "
        "IF NEW.subject = 'poison' THEN RAISE EXCEPTION 'poison message'; END IF; "
        "RETURN NEW; END $$ LANGUAGE plpgsql"
    )
    db.execute_sql(
        "CREATE TRIGGER poison BEFORE INSERT ON task FOR EACH ROW EXECUTE FUNCTION poison()"
    )


# The poll lock


def test_poll_skips_while_other_process_polls(db, settings, maildir):
    SyncState.create(
        key=LOCK_KEY, value="other-host:1:abc", updated_at=datetime.utcnow()
    )
    maildir.drop(make_email())

    handled = poll(settings)

    assert handled == 0
    assert len(maildir.new()) == 1
    assert SyncState.get_by_id(LOCK_KEY).value == "other-host:1:abc"


def test_poll_takes_over_stale_lock(db, settings, maildir):
    with freeze_time("2026-12-01 09:00:00"):
        SyncState.create(
            key=LOCK_KEY, value="dead-host:1:abc", updated_at=datetime.utcnow()
        )
    maildir.drop(make_email())

    with freeze_time("2026-12-01 09:16:00"):
        handled = poll(settings)

    assert handled == 1
    assert SyncState.get_by_id(LOCK_KEY).value == ""


def lock_value(host: str, pid: int) -> str:
    return LockHolder(host, pid, "2026-12-01T09:00:00Z", "abc").value


def dead_pid() -> int:
    """Return the pid of a child process that has exited and been reaped."""
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def test_poll_takes_over_lock_of_dead_process(db, settings, maildir, caplog):
    held = lock_value(socket.gethostname(), dead_pid())
    SyncState.create(key=LOCK_KEY, value=held, updated_at=datetime.utcnow())
    maildir.drop(make_email())

    handled = poll(settings)

    assert handled == 1
    assert SyncState.get_by_id(LOCK_KEY).value == ""
    assert "took over the mail poll lock" in caplog.text


def test_poll_skip_warns_with_holder(db, settings, maildir, caplog):
    held = lock_value(socket.gethostname(), os.getppid())
    with freeze_time("2026-12-01 09:00:00"):
        SyncState.create(key=LOCK_KEY, value=held, updated_at=datetime.utcnow())
    maildir.drop(make_email())

    with freeze_time("2026-12-01 09:05:00"):
        handled = poll(settings)

    assert handled == 0
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert len(warnings) == 1
    assert f"process {os.getppid()} on {socket.gethostname()}" in warnings[0]
    assert "expires at 2026-12-01T09:15:00Z" in warnings[0]


def test_poll_releases_lock_after_run(db, settings, maildir):
    maildir.drop(make_email())

    poll(settings)
    maildir.drop(make_email(sender=ASSIGNEE))
    second = poll(settings)

    assert second == 1


def test_poll_survives_missing_gmail_setup(make_settings, app, caplog):
    settings = make_settings(mail_backend="gmail")

    handled = poll(settings)

    assert handled == 0
    assert any("GMAIL_TOKEN_FILE" in r.getMessage() for r in caplog.records)


def dsn_bounce(
    original: bytes,
    recipient: str,
    action: str = "failed",
    status: str = "5.1.1",
    original_type: str = "message/rfc822",
) -> bytes:
    """Return a Postfix-style delivery status notification for ``original``."""
    boundary = "BOUNDARY-42"
    diagnostic = (
        f"smtp; 550 5.1.1 <{recipient}>: Recipient address rejected: User unknown"
    )
    return (
        (
            "From: MAILER-DAEMON@mx.example.com (Mail Delivery System)\r\n"
            f"To: {MAILBOX}\r\n"
            "Subject: Undelivered Mail Returned to Sender\r\n"
            f"Message-ID: <bounce-{uuid.uuid4().hex}@mx.example.com>\r\n"
            "Auto-Submitted: auto-replied\r\n"
            "MIME-Version: 1.0\r\n"
            f'Content-Type: multipart/report; report-type=delivery-status; boundary="{boundary}"\r\n'
            "\r\n"
            f"--{boundary}\r\n"
            "Content-Type: text/plain; charset=us-ascii\r\n\r\n"
            "I'm sorry to have to inform you that your message could not be delivered.\r\n"
            f"--{boundary}\r\n"
            "Content-Type: message/delivery-status\r\n\r\n"
            "Reporting-MTA: dns; mx.example.com\r\n\r\n"
            f"Final-Recipient: rfc822; {recipient}\r\n"
            f"Action: {action}\r\n"
            f"Status: {status}\r\n"
            f"Diagnostic-Code: {diagnostic}\r\n"
            f"\r\n--{boundary}\r\n"
            f"Content-Type: {original_type}\r\n\r\n"
        ).encode()
        + (original if original_type == "message/rfc822" else _headers_of(original))
        + f"\r\n--{boundary}--\r\n".encode()
    )


def _headers_of(raw: bytes) -> bytes:
    return raw.split(b"\n\n", 1)[0] + b"\n"


def test_bounce_with_headers_part_fails_delivery(db, settings, maildir):
    _, delivery = reminder_task(settings, maildir)
    original = make_email(
        sender=MAILBOX, message_id="<reminder-1@threadtask.example.com>"
    )

    maildir.drop(
        dsn_bounce(original, "gone@example.com", original_type="text/rfc822-headers")
    )
    poll(settings)

    delivery = Delivery.get_by_id(delivery.id)
    assert delivery.status == "failed"
    assert "gone@example.com failed 5.1.1" in delivery.error


def test_plain_bounce_found_by_in_reply_to(db, settings, maildir):
    task, delivery = reminder_task(settings, maildir)
    bounce = make_email(
        sender="Mail Delivery Subsystem <mailer-daemon@googlemail.com>",
        to=MAILBOX,
        subject="Delivery Status Notification (Failure)",
        body="Delivery to the following recipient failed permanently:\n\n"
        "     gone@example.com\n\nThe email account does not exist.",
        in_reply_to="<reminder-1@threadtask.example.com>",
        references="<reminder-1@threadtask.example.com>",
    )

    maildir.drop(bounce)
    poll(settings)

    delivery = Delivery.get_by_id(delivery.id)
    assert delivery.status == "failed"
    assert "failed permanently" in delivery.error
    assert Event.get(Event.field == "delivery").task_id == task.id
    assert Task.get_by_id(task.id).latest_message_id == "<origin@client.example.com>"


def test_prose_bounce_keeps_status_diagnostic(db, settings, maildir):
    _, delivery = reminder_task(settings, maildir)
    original = make_email(
        sender=MAILBOX, message_id="<reminder-1@threadtask.example.com>"
    )
    maildir.drop(dsn_bounce(original, "gone@example.com"))
    maildir.drop(
        make_email(
            sender="Mail Delivery Subsystem <mailer-daemon@relay.example.net>",
            to=MAILBOX,
            subject="Delivery Status Notification (Failure)",
            body="Your message could not be delivered to one or more recipients.",
            in_reply_to="<reminder-1@threadtask.example.com>",
        )
    )

    poll(settings)

    error = Delivery.get_by_id(delivery.id).error
    assert "5.1.1" in error
    assert "User unknown" in error
    rows = Event.select().where(Event.field == "delivery").order_by(Event.id)
    events = [row.new_value for row in rows]
    assert len(events) == 2
    assert "could not be delivered to one or more" in events[1]


def test_two_pollers_same_message_once(db, settings):
    raw = make_email(message_id="<race@client.example.com>")
    incoming = IncomingMessage(source="maildir", source_id="race.eml", raw=raw)
    barrier = threading.Barrier(2)
    outcomes: list[str] = []

    def run() -> None:
        barrier.wait()
        with database.connection_context():
            outcomes.append(ingest_message(incoming, settings).outcome)

    threads = [threading.Thread(target=run) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)

    assert sorted(outcomes) == ["created", "duplicate"]
    assert Task.select().count() == 1
    assert Task.get().version == 1
    assert MailMessage.select().count() == 1
    assert QuarantinedMessage.select().count() == 0
