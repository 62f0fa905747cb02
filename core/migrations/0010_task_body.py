"""Move each task's HTML body out of the task row into task_body.

SQLite writes a whole row again on every UPDATE, and reads through a large
value to reach the columns stored after it, so bodies of many kilobytes
made every change of a task's schedule or status cost that much. Only
non-empty bodies get a row.
"""

from peewee import ForeignKeyField, Model, TextField


def up(migrator, db):
    class Base(Model):
        class Meta:
            database = db
            legacy_table_names = False

    # A frozen stand-in for the existing table, only to declare the key.
    class Task(Base):
        pass

    class TaskBody(Base):
        task = ForeignKeyField(Task, primary_key=True, on_delete="CASCADE")
        html = TextField()

    db.create_tables([TaskBody])
    db.execute_sql(
        "INSERT INTO task_body (task_id, html) SELECT id, html FROM task "
        "WHERE html != ''"
    )
    migrator.migrate(migrator.drop_column("task", "html"))


def down(migrator, db):
    migrator.migrate(migrator.add_column("task", "html", TextField(default="")))
    db.execute_sql(
        "UPDATE task SET html = (SELECT html FROM task_body "
        "WHERE task_body.task_id = task.id) "
        "WHERE id IN (SELECT task_id FROM task_body)"
    )
    db.execute_sql("DROP TABLE IF EXISTS task_body")
