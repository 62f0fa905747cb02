"""Index only the deliveries each query looks for, so writes maintain less.

The status and scheduled_at indexes held every delivery ever made, though
the sender's queries look only for pending or in-flight ones, and the
unique Message-ID index held a NULL for every delivery not yet claimed.
Partial indexes keep those entries out: a finished delivery leaves them,
and a new one enters only the index of pending deliveries. SQLite and
PostgreSQL both use a partial index when the query's WHERE implies the
index's WHERE.
"""


def up(migrator, db):
    db.execute_sql("DROP INDEX IF EXISTS delivery_status")
    db.execute_sql("DROP INDEX IF EXISTS delivery_scheduled_at")
    db.execute_sql("DROP INDEX IF EXISTS delivery_message_id")
    # queue_due_deliveries: pending and due, oldest first.
    db.execute_sql(
        "CREATE INDEX delivery_pending_scheduled_at ON delivery (scheduled_at) "
        "WHERE status = 'pending'"
    )
    # in_flight_delivery_ids: queued or being sent.
    db.execute_sql(
        "CREATE INDEX delivery_in_flight ON delivery (status) "
        "WHERE status IN ('queued', 'sending')"
    )
    # The mail reader finds our own emails by Message-ID; a delivery gets
    # one only when a sender claims it.
    db.execute_sql(
        "CREATE UNIQUE INDEX delivery_message_id ON delivery (message_id) "
        "WHERE message_id IS NOT NULL"
    )


def down(migrator, db):
    db.execute_sql("DROP INDEX IF EXISTS delivery_pending_scheduled_at")
    db.execute_sql("DROP INDEX IF EXISTS delivery_in_flight")
    db.execute_sql("DROP INDEX IF EXISTS delivery_message_id")
    db.execute_sql("CREATE INDEX delivery_status ON delivery (status)")
    db.execute_sql("CREATE INDEX delivery_scheduled_at ON delivery (scheduled_at)")
    db.execute_sql("CREATE UNIQUE INDEX delivery_message_id ON delivery (message_id)")
