"""Record on the task that a reminder fell due, instead of a delivery row.

The tick used to write two rows per due task: a delivery row and the task's
new ``next_reminder_at``. It now writes only the task row, setting
``reminder_due_at`` in the same UPDATE that moves the schedule on. The clock
turns these marks into queued delivery rows when it hands reminders to the
queue, which replaces the update from ``pending`` to ``queued`` those rows
needed before. The partial index holds only tasks with a mark, so it stays
small however large the table grows.
"""

from peewee import DateTimeField


def up(migrator, db):
    migrator.migrate(
        migrator.add_column("task", "reminder_due_at", DateTimeField(null=True))
    )
    db.execute_sql(
        "CREATE INDEX task_reminder_due_at ON task (reminder_due_at) "
        "WHERE reminder_due_at IS NOT NULL"
    )
    # Reminders the old tick stored as pending delivery rows stay as they
    # are: the hand-over still moves pending, due rows to the queue.


def down(migrator, db):
    db.execute_sql("DROP INDEX IF EXISTS task_reminder_due_at")
    migrator.migrate(migrator.drop_column("task", "reminder_due_at"))
