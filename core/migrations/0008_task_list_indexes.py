"""Index the common list filters together with the default sort.

"My open tasks" filters on assignee and status and sorts newest first. An
index on (assigned_to, status) keeps equal entries in rowid order, so SQLite
reads the first page straight off the index instead of fetching every match
and sorting. The same holds for a creator's tasks.
"""


def up(migrator, db):
    db.execute_sql(
        "CREATE INDEX IF NOT EXISTS task_assigned_to_status ON task (assigned_to, status)"
    )
    db.execute_sql(
        "CREATE INDEX IF NOT EXISTS task_creator_email_status "
        "ON task (creator_email, status)"
    )


def down(migrator, db):
    db.execute_sql("DROP INDEX IF EXISTS task_assigned_to_status")
    db.execute_sql("DROP INDEX IF EXISTS task_creator_email_status")
