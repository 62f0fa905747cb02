"""Fixtures for the reminder tests: queues on both backends, the outbox, tasks."""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from datetime import datetime
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path

import pytest

from core.outbound import OutboxTransport
from core.tasks import create_task
from tests.conftest import ASSIGNEE, CREATOR, actor

# The local Slack Web API on 127.0.0.1, for the clock's Slack notices.
from tests.slack.conftest import slack_api  # noqa: F401 (a fixture)

REDIS_URL = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
START = datetime(2026, 3, 2, 9, 0, 0)


@pytest.fixture
def redis_connection() -> Iterator:
    from redis import Redis
    from redis.exceptions import ConnectionError as RedisConnectionError

    connection = Redis.from_url(REDIS_URL, socket_connect_timeout=5)
    try:
        connection.ping()
    except RedisConnectionError as exc:
        if os.environ.get("CI") == "true":
            pytest.fail(f"Redis at {REDIS_URL} is required under CI: {exc}")
        pytest.skip(f"Redis at {REDIS_URL} is not reachable: {exc}")
    yield connection
    connection.close()


def _delete_rq_keys(connection, name: str) -> None:
    # Queue, registries and jobs all carry the queue name in their keys.
    keys = list(connection.scan_iter(f"rq:*{name}*"))
    if keys:
        connection.delete(*keys)


@pytest.fixture
def make_queue(tmp_path: Path, request: pytest.FixtureRequest):
    """Return a function opening a queue of the given backend, cleaned up after."""
    opened: list = []
    names: list[tuple] = []

    def build(kind: str, *, consumer: bool = True, directory: Path | None = None):
        from scheduler.queue import RQReminderQueue, SQLiteReminderQueue

        if kind == "sqlite":
            queue = SQLiteReminderQueue(
                directory or tmp_path / "queue", consumer=consumer
            )
        else:
            connection = request.getfixturevalue("redis_connection")
            name = getattr(request.node, "_rq_queue_name", None)
            if name is None:
                name = f"test-reminders-{secrets.token_hex(6)}"
                request.node._rq_queue_name = name
                names.append((connection, name))
            queue = RQReminderQueue(REDIS_URL, name=name, connection=connection)
        opened.append(queue)
        return queue

    yield build
    for queue in opened:
        if hasattr(queue, "_queue"):
            queue.close()
    for connection, name in names:
        _delete_rq_keys(connection, name)


@pytest.fixture
def outbox(settings) -> OutboxTransport:
    return OutboxTransport(settings.resolved_outbox_dir)


def outbox_messages(outbox: OutboxTransport) -> list[EmailMessage]:
    """Parse every finished .eml file in the outbox, oldest delivery first."""
    if not outbox.directory.exists():
        return []
    return [
        message_from_bytes(path.read_bytes(), policy=policy.default)
        for path in sorted(outbox.directory.glob("*.eml"))
    ]


def make_task(now: datetime = START, **fields):
    """Create a task as its creator would through the mail channel."""
    values = {
        "subject": "Printer on floor 3 is jammed",
        "thread_id": f"18c{secrets.token_hex(6)}",
        "latest_message_id": f"<{secrets.token_hex(8)}@mail.example.com>",
        "assigned_to": ASSIGNEE,
        "criticality": "medium",
    }
    values.update(fields)
    return create_task(actor(CREATOR, "mail"), values, now=now)
