"""Peewee models. The schema itself is created by the files in migrations/."""

from __future__ import annotations

import peewee as pw

from core.db import database
from core.timeutil import utcnow

CHANNELS = ("api", "mail", "slack", "addon", "scheduler", "cli")


class BaseModel(pw.Model):
    class Meta:
        database = database
        legacy_table_names = False


class Task(BaseModel):
    """One email thread that someone must deal with."""

    creator_email = pw.CharField(max_length=320, index=True)
    assigned_to = pw.CharField(max_length=320, default="", index=True)
    subject = pw.TextField(default="")
    thread_id = pw.CharField(max_length=255, unique=True)
    latest_message_id = pw.CharField(max_length=998, default="")
    status = pw.CharField(max_length=16, default="open", index=True)
    criticality = pw.CharField(max_length=16, default="medium", index=True)
    # Incremented by every change; the ETag is built from it.
    version = pw.IntegerField(default=1)
    created_at = pw.DateTimeField(default=utcnow)
    modified_at = pw.DateTimeField(default=utcnow, index=True)
    last_reminder_at = pw.DateTimeField(null=True)
    next_reminder_at = pw.DateTimeField(null=True, index=True)
    # When the tick found a reminder due that the clock has not yet handed to
    # the queue; NULL otherwise. Its partial index comes from migration 0009.
    reminder_due_at = pw.DateTimeField(null=True)

    # The email's HTML body, read and set as ``task.html`` but stored in
    # TaskBody (see its docstring). None until read or set.
    _html: str | None = None

    @classmethod
    def for_thread(cls, thread_id: str) -> Task | None:
        return cls.get_or_none(cls.thread_id == thread_id)

    @property
    def html(self) -> str:
        """The HTML body, loaded from TaskBody on first read."""
        if self._html is None:
            body = None
            if self.id is not None:
                body = TaskBody.get_or_none(TaskBody.task == self.id)
            self._html = body.html if body is not None else ""
        return self._html

    @html.setter
    def html(self, value: str | None) -> None:
        # A query that selects the body as a column "html" lands here too.
        self._html = value or ""

    @property
    def etag(self) -> str:
        return f'"{self.id}-{self.version}"'


class TaskBody(BaseModel):
    """The HTML body of a task, in a table of its own.

    SQLite writes a whole row again on every UPDATE, a body of many
    kilobytes included, and reads through the body to reach the columns
    stored after it. With the body in the task's row, moving 1,000 tasks'
    schedules with 20 KB bodies took 9 times the query that selected them.
    Kept here, the bodies leave the task rows small.
    """

    task = pw.ForeignKeyField(
        Task, primary_key=True, backref="bodies", on_delete="CASCADE"
    )
    html = pw.TextField()


class Event(BaseModel):
    """One recorded change of one field of a task."""

    task = pw.ForeignKeyField(Task, backref="events", on_delete="CASCADE")
    actor = pw.CharField(max_length=320)
    channel = pw.CharField(max_length=16)
    field = pw.CharField(max_length=64)
    old_value = pw.TextField(null=True)
    new_value = pw.TextField(null=True)
    created_at = pw.DateTimeField(default=utcnow)


class Delivery(BaseModel):
    """One outbound email about a task: a reminder or an assignment notice.

    The row is the source of truth for the queue: a delivery that is pending
    and due is enqueued again if its queue message was lost.
    """

    task = pw.ForeignKeyField(Task, backref="deliveries", on_delete="CASCADE")
    kind = pw.CharField(max_length=32)
    recipient = pw.CharField(max_length=320, default="")
    # Partial indexes on status, scheduled_at and message_id (unique where
    # set) come from migration 0006; Peewee's index flags cannot express them.
    status = pw.CharField(max_length=16, default="pending")
    scheduled_at = pw.DateTimeField(default=utcnow)
    sent_at = pw.DateTimeField(null=True)
    attempts = pw.IntegerField(default=0)
    error = pw.TextField(default="")
    provider_message_id = pw.CharField(max_length=255, default="")
    message_id = pw.CharField(max_length=998, null=True)
    created_at = pw.DateTimeField(default=utcnow)
    updated_at = pw.DateTimeField(default=utcnow)


class MailMessage(BaseModel):
    """A Message-ID the product has read or sent, with what became of it."""

    message_id = pw.CharField(max_length=998, unique=True)
    task = pw.ForeignKeyField(Task, backref="messages", null=True, on_delete="SET NULL")
    direction = pw.CharField(max_length=8)  # "in" or "out"
    source_id = pw.CharField(max_length=255, default="")
    thread_id = pw.CharField(max_length=255, default="", index=True)
    outcome = pw.CharField(max_length=16, default="")
    reason = pw.TextField(default="")
    sender = pw.CharField(max_length=320, default="")
    subject = pw.TextField(default="")
    attachments = pw.TextField(default="[]")  # JSON list of name, type, size
    created_at = pw.DateTimeField(default=utcnow)


class SyncState(BaseModel):
    """A named cursor, such as the Gmail history id of the last sync."""

    key = pw.CharField(max_length=64, primary_key=True)
    value = pw.TextField()
    updated_at = pw.DateTimeField(default=utcnow)


class ApiToken(BaseModel):
    """A bearer token for the REST API, stored as its SHA-256 digest."""

    email = pw.CharField(max_length=320, index=True)
    token_hash = pw.CharField(max_length=64, unique=True)
    prefix = pw.CharField(max_length=16)
    is_service = pw.BooleanField(default=False)
    created_at = pw.DateTimeField(default=utcnow)
    last_used_at = pw.DateTimeField(null=True)
    revoked_at = pw.DateTimeField(null=True)


class DeliveryAttempt(BaseModel):
    """One try at sending a delivery, with its outcome and duration.

    An attempt whose outcome is still empty when another sender picks the
    delivery up was interrupted: its process died between claiming the row
    and recording the result.
    """

    delivery = pw.ForeignKeyField(Delivery, backref="attempt_rows", on_delete="CASCADE")
    number = pw.IntegerField()
    started_at = pw.DateTimeField()
    finished_at = pw.DateTimeField(null=True)
    # "" while in progress, then "sent", "failed", "retry", "skipped" or
    # "interrupted".
    outcome = pw.CharField(max_length=16, default="")
    error = pw.TextField(default="")
    duration_ms = pw.IntegerField(null=True)


ALL_MODELS = [Task, Event, Delivery, MailMessage, SyncState, ApiToken, DeliveryAttempt]
