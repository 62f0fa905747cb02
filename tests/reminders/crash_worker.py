"""A worker that stops dead at a chosen point, for the SIGKILL tests.

Run as ``python -m tests.reminders.crash_worker before-send|after-send
MARKER [RQ_QUEUE_NAME]``. It consumes the persist-queue, or the named RQ
queue on REDIS_URL, like the real worker. Its outbox writes MARKER and then
waits to be killed: before the email is written, or after the email is
written and before the outcome is recorded.
"""

from __future__ import annotations

import sys
import threading
import time
from pathlib import Path

from core.config import load_settings, use_settings
from core.db import open_database
from core.outbound import OutboxTransport, Outgoing
from scheduler.queue import RQReminderQueue, open_queue
from scheduler.worker import build_handler


class StoppingOutbox(OutboxTransport):
    def __init__(self, directory: Path, mode: str, marker: Path) -> None:
        super().__init__(directory)
        self.mode = mode
        self.marker = marker

    def send(self, outgoing: Outgoing) -> str:
        if self.mode == "before-send":
            self._wait_for_kill()
        provider_id = super().send(outgoing)
        self._wait_for_kill()
        return provider_id

    def _wait_for_kill(self) -> None:
        self.marker.write_text("ready")
        while True:
            time.sleep(1)


def main() -> None:
    mode, marker = sys.argv[1], Path(sys.argv[2])
    settings = use_settings(load_settings())
    open_database(settings.resolved_database_url)
    transport = StoppingOutbox(settings.resolved_outbox_dir, mode, marker)
    if len(sys.argv) > 3:
        queue = RQReminderQueue(settings.redis_url, name=sys.argv[3])
    else:
        queue = open_queue(settings, consumer=True)
    queue.work(build_handler(settings, transport), burst=True, stop=threading.Event())


if __name__ == "__main__":
    main()
