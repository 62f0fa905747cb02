"""Marshmallow schemas: they validate requests, shape responses and feed
the OpenAPI document, so the three cannot drift apart."""

from __future__ import annotations

from marshmallow import RAISE, Schema, fields, validate

from core.config import CRITICALITIES, STATUSES
from core.timeutil import isoformat


class UtcDateTime(fields.Field):
    """A stored naive UTC datetime, written as ISO 8601 with ``Z``."""

    def _serialize(self, value, attr, obj, **kwargs):
        return isoformat(value)

    def _jsonschema_type_mapping(self):
        return {"type": "string", "format": "date-time"}


class StrictSchema(Schema):
    class Meta:
        unknown = RAISE


class TaskWriteSchema(StrictSchema):
    """Fields a client may send when creating or changing a task."""

    creator_email = fields.String(metadata={"description": "Defaults to the caller."})
    assigned_to = fields.String(metadata={"description": "Email address, or empty."})
    subject = fields.String()
    thread_id = fields.String(metadata={"description": "Unique per task."})
    latest_message_id = fields.String()
    html = fields.String()
    criticality = fields.String(validate=validate.OneOf(CRITICALITIES))


class TaskCreateSchema(TaskWriteSchema):
    thread_id = fields.String(required=True)


class TaskUpdateSchema(TaskWriteSchema):
    status = fields.String(validate=validate.OneOf(STATUSES))

    class Meta:
        unknown = RAISE
        exclude = ("creator_email",)


class TaskSummarySchema(Schema):
    id = fields.Integer()
    subject = fields.String()
    creator_email = fields.String()
    assigned_to = fields.String()
    status = fields.String(metadata={"enum": list(STATUSES)})
    criticality = fields.String(metadata={"enum": list(CRITICALITIES)})
    thread_id = fields.String()
    latest_message_id = fields.String()
    created_at = UtcDateTime()
    modified_at = UtcDateTime()
    last_reminder_at = UtcDateTime(allow_none=True)
    next_reminder_at = UtcDateTime(allow_none=True)


class EventSchema(Schema):
    id = fields.Integer()
    actor = fields.String()
    channel = fields.String()
    field = fields.String()
    old_value = fields.String(allow_none=True)
    new_value = fields.String(allow_none=True)
    created_at = UtcDateTime()


class ReminderSchema(Schema):
    id = fields.Integer()
    kind = fields.String()
    recipient = fields.String()
    status = fields.String()
    scheduled_at = UtcDateTime()
    sent_at = UtcDateTime(allow_none=True)
    attempts = fields.Integer()
    error = fields.String()
    provider_message_id = fields.String()
    message_id = fields.String(allow_none=True)


class TaskDetailSchema(TaskSummarySchema):
    html = fields.String()
    version = fields.Integer()
    events = fields.List(fields.Nested(EventSchema))
    reminders = fields.List(fields.Nested(ReminderSchema))


class TaskListSchema(Schema):
    tasks = fields.List(fields.Nested(TaskSummarySchema))
    limit = fields.Integer()
    next_cursor = fields.String(
        allow_none=True,
        metadata={
            "description": "Pass as cursor= for the next page; null on the last."
        },
    )
    total = fields.Integer(metadata={"description": "Only with include_total=true."})


class ProblemSchema(Schema):
    type = fields.String()
    title = fields.String()
    status = fields.Integer()
    detail = fields.String()
    errors = fields.List(fields.Dict())
    existing_task_id = fields.Integer()
    position = fields.Integer()


task_summary = TaskSummarySchema()
task_detail = TaskDetailSchema()
task_list = TaskListSchema()
