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

# WAL lets the web, clock and worker processes read while one of them writes;
# the busy timeout makes a writer wait for the lock instead of failing at once.
SQLITE_PRAGMAS = {
    "journal_mode": "wal",
    "foreign_keys": 1,
    "busy_timeout": 10_000,
    "synchronous": "normal",
}


def open_database(url: str) -> peewee.Database:
    """Create the database for ``url`` and bind the shared proxy to it."""
    scheme = urlparse(url).scheme
    if scheme.startswith("sqlite"):
        path = url.split(":///", 1)[-1].split("?", 1)[0]
        if path and path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        db = connect(url, pragmas=SQLITE_PRAGMAS, timeout=10)
    elif scheme.startswith("postgres") or scheme == "psycopg2":
        db = connect(url, autorollback=True)
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
