"""Create tasks, events, deliveries, mail messages, sync state and tokens."""

import datetime

from peewee import (
    BooleanField,
    CharField,
    DateTimeField,
    ForeignKeyField,
    IntegerField,
    Model,
    TextField,
)


def up(migrator, db):
    class Base(Model):
        class Meta:
            database = db
            legacy_table_names = False

    now = datetime.datetime.utcnow

    class Task(Base):
        creator_email = CharField(max_length=320, index=True)
        assigned_to = CharField(max_length=320, default="", index=True)
        subject = TextField(default="")
        thread_id = CharField(max_length=255, unique=True)
        latest_message_id = CharField(max_length=998, default="")
        html = TextField(default="")
        status = CharField(max_length=16, default="open", index=True)
        criticality = CharField(max_length=16, default="medium", index=True)
        version = IntegerField(default=1)
        created_at = DateTimeField(default=now)
        modified_at = DateTimeField(default=now, index=True)
        last_reminder_at = DateTimeField(null=True)
        next_reminder_at = DateTimeField(null=True, index=True)

    class Event(Base):
        task = ForeignKeyField(Task, on_delete="CASCADE")
        actor = CharField(max_length=320)
        channel = CharField(max_length=16)
        field = CharField(max_length=64)
        old_value = TextField(null=True)
        new_value = TextField(null=True)
        created_at = DateTimeField(default=now)

    class Delivery(Base):
        task = ForeignKeyField(Task, on_delete="CASCADE")
        kind = CharField(max_length=32)
        recipient = CharField(max_length=320, default="")
        status = CharField(max_length=16, default="pending", index=True)
        scheduled_at = DateTimeField(default=now, index=True)
        sent_at = DateTimeField(null=True)
        attempts = IntegerField(default=0)
        error = TextField(default="")
        provider_message_id = CharField(max_length=255, default="")
        message_id = CharField(max_length=998, null=True, unique=True)
        created_at = DateTimeField(default=now)
        updated_at = DateTimeField(default=now)

    class MailMessage(Base):
        message_id = CharField(max_length=998, unique=True)
        task = ForeignKeyField(Task, null=True, on_delete="SET NULL")
        direction = CharField(max_length=8)
        source_id = CharField(max_length=255, default="")
        thread_id = CharField(max_length=255, default="", index=True)
        outcome = CharField(max_length=16, default="")
        reason = TextField(default="")
        sender = CharField(max_length=320, default="")
        subject = TextField(default="")
        attachments = TextField(default="[]")
        created_at = DateTimeField(default=now)

    class SyncState(Base):
        key = CharField(max_length=64, primary_key=True)
        value = TextField()
        updated_at = DateTimeField(default=now)

    class ApiToken(Base):
        email = CharField(max_length=320, index=True)
        token_hash = CharField(max_length=64, unique=True)
        prefix = CharField(max_length=16)
        is_service = BooleanField(default=False)
        created_at = DateTimeField(default=now)
        last_used_at = DateTimeField(null=True)
        revoked_at = DateTimeField(null=True)

    db.create_tables([Task, Event, Delivery, MailMessage, SyncState, ApiToken])
