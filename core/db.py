"""Database connection: a Peewee proxy that each process initialises once."""

from __future__ import annotations

import logging
from pathlib import Path
from urllib.parse import urlparse

import peewee
from playhouse import migrations
from playhouse.db_url import connect

logger = logging.getLogger(__name__)

database = peewee.DatabaseProxy()

MIGRATIONS_DIR = Path(__file__).with_name("migrations")

# WAL lets the web, clock and worker processes read while one of them writes.
# The busy timeout makes a writer wait for the lock instead of failing at once.
SQLITE_PRAGMAS = {
    "journal_mode": "wal",
    "foreign_keys": 1,
    "busy_timeout": 10_000,
    "synchronous": "normal",
}


POOL_MAX_CONNECTIONS = 32
POOL_STALE_SECONDS = 300


def open_database(url: str) -> peewee.Database:
    """Create the database for ``url`` and bind the shared proxy to it."""
    scheme = urlparse(url).scheme
    rest = url.split(":", 1)[1]
    # Pooled connections are reused across requests, so the SQLite pragmas
    # and the PostgreSQL handshake run once per connection, not per request.
    if scheme in ("sqlite", "sqlite+pool"):
        path = url.split(":///", 1)[-1].split("?", 1)[0]
        if path and path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        db = connect(
            "sqlite+pool:" + rest,
            pragmas=SQLITE_PRAGMAS,
            timeout=10,
            # A deferred transaction that reads and then writes fails at once
            # with "database is locked" when another process wrote in between,
            # whatever the busy timeout. Taking the write lock at BEGIN makes
            # it wait for the timeout instead.
            lock_type="IMMEDIATE",
            # The pool gives a returned connection to the next thread that
            # requests one, and Peewee uses each connection in one thread at
            # a time.
            check_same_thread=False,
            max_connections=POOL_MAX_CONNECTIONS,
            stale_timeout=POOL_STALE_SECONDS,
        )
    elif scheme in ("postgres", "postgresql", "postgres+pool", "postgresql+pool"):
        db = connect(
            "postgresql+pool:" + rest,
            max_connections=POOL_MAX_CONNECTIONS,
            stale_timeout=POOL_STALE_SECONDS,
        )
    else:
        raise ValueError(
            f"DATABASE_URL scheme {scheme!r} is not supported; "
            "use sqlite:///PATH or postgresql://USER@HOST:PORT/NAME"
        )
    database.initialize(db)
    return db


def migrate_database() -> list[str]:
    """Apply the pending migrations in order and return their names."""
    runner = migrations.Runner(database.obj, directory=str(MIGRATIONS_DIR))
    pending = [m.name for m in runner.migrations() if m.name not in runner.applied()]
    runner.up()
    for name in pending:
        logger.info("applied migration %s", name)
    return pending


def optimize_database() -> None:
    """Refresh the statistics the query planner uses to pick indexes.

    Without them SQLite picks an index by its shape alone and can read ten
    times the rows a filter needs once a table is large. The clock runs this
    periodically and ``init-db`` after migrating. PostgreSQL's autovacuum
    keeps its own statistics, so nothing is done there.
    """
    if isinstance(database.obj, peewee.SqliteDatabase):
        # analysis_limit samples about this many rows per index, which keeps
        # ANALYZE fast on big tables (https://sqlite.org/lang_analyze.html).
        database.execute_sql("PRAGMA analysis_limit=1000")
        database.execute_sql("ANALYZE")
        logger.info("refreshed SQLite query planner statistics")
