"""Record each try at sending a delivery, so interrupted sends can be found,
and allow at most one unfinished reminder per task and kind."""

from peewee import (
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

    # A frozen stand-in for the existing table, only to declare the key.
    class Delivery(Base):
        pass

    class DeliveryAttempt(Base):
        delivery = ForeignKeyField(Delivery, on_delete="CASCADE")
        number = IntegerField()
        started_at = DateTimeField()
        finished_at = DateTimeField(null=True)
        outcome = CharField(max_length=16, default="")
        error = TextField(default="")
        duration_ms = IntegerField(null=True)

    db.create_tables([DeliveryAttempt])
    # Two clocks ticking at once both try to insert the same reminder; this
    # index lets only one in. SQLite and PostgreSQL both accept partial indexes.
    db.execute_sql(
        "CREATE UNIQUE INDEX delivery_one_unfinished_reminder "
        "ON delivery (task_id, kind) "
        "WHERE status IN ('pending', 'queued', 'sending') "
        "AND kind IN ('open_reminder', 'fixed_reminder')"
    )


def down(migrator, db):
    db.execute_sql("DROP INDEX IF EXISTS delivery_one_unfinished_reminder")
    db.execute_sql("DROP TABLE IF EXISTS delivery_attempt")
