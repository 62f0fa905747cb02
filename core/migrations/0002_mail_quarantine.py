"""Add the quarantine of emails that the mail reader could not handle."""

import datetime

from peewee import CharField, DateTimeField, IntegerField, Model, TextField


def up(migrator, db):
    class QuarantinedMessage(Model):
        source = CharField(max_length=16)
        source_id = CharField(max_length=255)
        message_id = CharField(max_length=998, default="")
        raw_path = TextField()
        size = IntegerField(default=0)
        error = TextField()
        created_at = DateTimeField(default=datetime.datetime.utcnow, index=True)

        class Meta:
            database = db
            table_name = "mail_quarantine"
            indexes = ((("source", "source_id"), True),)

    db.create_tables([QuarantinedMessage])


def down(migrator, db):
    db.execute_sql("DROP TABLE IF EXISTS mail_quarantine")
