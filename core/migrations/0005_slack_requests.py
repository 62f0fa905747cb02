"""Record the Slack requests whose action was applied, so retries apply once."""

import datetime

from peewee import CharField, DateTimeField, Model


def up(migrator, db):
    class SlackRequest(Model):
        key = CharField(max_length=255, unique=True)
        created_at = DateTimeField(default=datetime.datetime.utcnow, index=True)

        class Meta:
            database = db
            legacy_table_names = False

    db.create_tables([SlackRequest])


def down(migrator, db):
    db.execute_sql("DROP TABLE IF EXISTS slack_request")
