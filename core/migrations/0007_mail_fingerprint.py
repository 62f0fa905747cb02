"""Add the content fingerprint of each email the mail reader stored.

Some mail clients reuse one Message-ID for different emails. The reader
compares fingerprints to tell such an email from a re-delivery of one it
has already stored.
"""

from peewee import CharField, Model


def up(migrator, db):
    class MessageFingerprint(Model):
        message_id = CharField(max_length=998, unique=True)
        fingerprint = CharField(max_length=64)

        class Meta:
            database = db
            table_name = "mail_fingerprint"

    db.create_tables([MessageFingerprint])


def down(migrator, db):
    db.execute_sql("DROP TABLE IF EXISTS mail_fingerprint")
