"""The sender process: ``python -m scheduler.worker [--burst]``.

It takes delivery ids off the reminder queue and hands each to
``core.reminders.deliver``, which reloads the task, sends or skips, and
records the outcome before the message is acknowledged.
"""

from __future__ import annotations

import argparse
import logging
import threading
from typing import Any

from core.config import Settings, get_settings
from core.db import database
from core.outbound import Transport, build_transport
from core.reminders import deliver
from scheduler.queue import Handler, open_queue
from scheduler.runtime import install_stop_handlers, start

logger = logging.getLogger(__name__)


def build_handler(
    settings: Settings | None = None,
    transport: Transport | None = None,
    gmail_service: Any = None,
) -> Handler:
    """Return a function that delivers one delivery id in its own connection."""
    settings = settings or get_settings()
    transport = transport or build_transport(settings, gmail_service)

    def handle(delivery_id: int) -> str:
        with database.connection_context():
            return deliver(delivery_id, transport)

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
