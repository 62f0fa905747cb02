"""Record each try at sending a delivery, so interrupted sends can be found."""

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


def down(migrator, db):
    db.execute_sql("DROP TABLE IF EXISTS delivery_attempt")
