"""The sender process: ``python -m scheduler.worker [--burst]``.

It takes delivery ids off the reminder queue and hands each to
``core.reminders.deliver``, which reloads the task, sends or skips, and
records the outcome before the message is acknowledged.
"""

from __future__ import annotations

import argparse
import logging
import threading
import time
from typing import Any

import peewee as pw

from core.config import Settings, get_settings
from core.db import database
from core.outbound import Transport, build_transport
from core.reminders import deliver
from scheduler.queue import Handler, open_queue
from scheduler.runtime import install_stop_handlers, start

logger = logging.getLogger(__name__)

IDLE_RECONNECT_SECONDS = 60


def build_handler(
    settings: Settings | None = None,
    transport: Transport | None = None,
    gmail_service: Any = None,
) -> Handler:
    """Return a function that delivers one delivery id in its own connection."""
    settings = settings or get_settings()
    transport = transport or build_transport(settings, gmail_service)
    last_used = 0.0

    def handle(delivery_id: int) -> str:
        nonlocal last_used
        # One connection serves a run of deliveries; one left idle longer
        # than a minute is replaced, because the server may have dropped it.
        if time.monotonic() - last_used > IDLE_RECONNECT_SECONDS:
            database.close()
        database.connect(reuse_if_open=True)
        try:
            return deliver(delivery_id, transport)
        except (pw.OperationalError, pw.InterfaceError) as exc:
            # The server may have dropped the connection (a restart, an
            # admin, a network failure). Try once more on a new connection,
            # so the delivery need not wait for the clock to put it back.
            # The retry resumes from the status the first try recorded.
            logger.warning(
                "delivery %s: the database failed (%s); trying once more "
                "on a new connection",
                delivery_id,
                str(exc).strip(),
            )
            database.close()
            database.connect()
            try:
                return deliver(delivery_id, transport)
            except Exception:
                database.close()
                raise
        except Exception:
            # A connection that failed mid-delivery is not trusted again.
            database.close()
            raise
        finally:
            last_used = time.monotonic()

    return handle


def run(settings: Settings, *, burst: bool, stop: threading.Event) -> int:
    """Consume the queue until it is empty (burst) or ``stop`` is set."""
    queue = open_queue(settings, consumer=True)
    try:
        handled = queue.work(build_handler(settings), burst=burst, stop=stop)
    finally:
        queue.close()
    logger.info("worker stopped after %d deliveries", handled)
    return handled


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m scheduler.worker",
        description="Send the reminders waiting on the queue.",
    )
    parser.add_argument(
        "--burst",
        action="store_true",
        help="exit once the queue is empty instead of waiting for more",
    )
    args = parser.parse_args(argv)

    stop = threading.Event()
    install_stop_handlers(stop)
    settings = start("worker")
    run(settings, burst=args.burst, stop=stop)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
