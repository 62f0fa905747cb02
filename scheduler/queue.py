"""The reminder queue: delivery ids travel from the clock to the sender.

Messages carry only a delivery id as JSON. The Delivery row contains
everything else, so a lost or duplicated message costs nothing but a check.

Two backends share one interface:

* ``SQLiteReminderQueue``: persist-queue's ``SQLiteAckQueue`` in a folder on
  local disk, the default. persist-queue does not support several processes
  consuming one file, so exactly one process (the worker) opens it as the
  consumer; producers (the clock, CLI commands) open it without resuming
  unacknowledged messages, and the web process never opens it.
* ``RQReminderQueue``: RQ on Redis, chosen when REDIS_URL is set, so the
  clock and the worker can run on machines that share no disk.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from core.config import Settings

logger = logging.getLogger(__name__)

Handler = Callable[[int], object]

QUEUE_NAME = "reminders"
# How long a waiting consumer sleeps between looks at an empty queue.
POLL_SECONDS = 1.0
# Acknowledged messages are deleted every this many acks, keeping the latest
# few for inspection, so the queue file does not grow forever.
CLEAR_EVERY_ACKS = 500
KEEP_ACKED = 100
CLEAR_MAX_ROWS = 100_000


class ReminderQueue(ABC):
    """A durable queue of delivery ids with at most one waiting message each."""

    @abstractmethod
    def enqueue(self, delivery_ids: Iterable[int]) -> list[int]:
        """Put one message per delivery that has none waiting; return the ids put.

        A message counts as waiting until the consumer acknowledges it, so a
        delivery being sent right now is not put again.
        """

    @abstractmethod
    def work(self, handle: Handler, *, burst: bool, stop: threading.Event) -> int:
        """Call ``handle`` for each message and acknowledge it; return the count.

        A handler that raises is logged and its message acknowledged anyway,
        so one bad delivery never blocks the ones behind it. The Delivery row
        keeps it due, and the next tick puts it back. With ``burst`` the call
        returns once the queue is empty; otherwise it runs until ``stop``
        is set.
        """

    @abstractmethod
    def waiting_count(self) -> int:
        """Return how many messages are waiting, including ones being handled."""

    @abstractmethod
    def close(self) -> None:
        """Release connections and files."""


class SQLiteReminderQueue(ReminderQueue):
    def __init__(
        self, directory: Path, *, consumer: bool, name: str = QUEUE_NAME
    ) -> None:
        self.directory = directory
        self._consumer = consumer
        self._name = name
        directory.mkdir(parents=True, exist_ok=True)
        self._queue = self._open()
        self._file = directory / self._queue.db_file_name
        self._file_id = _file_id(self._file)
        self._acked_since_clear = 0

    def _open(self) -> Any:
        import persistqueue
        import persistqueue.serializers.json as json_serializer

        return persistqueue.SQLiteAckQueue(
            str(self.directory),
            # Only the consumer may resume messages left unacknowledged by a
            # process that died. A producer doing so would hand the
            # consumer's in-flight messages out a second time.
            auto_resume=self._consumer,
            name=self._name,
            multithreading=True,
            timeout=30.0,
            serializer=json_serializer,
        )

    def _reopen_if_replaced(self) -> None:
        """Open the queue file again if it was deleted or replaced on disk.

        SQLite keeps using a file it has open after the file is deleted, so
        without this a process would go on putting messages into, or waiting
        on, a file no other process can see. The Delivery rows keep what
        was in it; the clock puts those deliveries back.
        """
        if _file_id(self._file) == self._file_id:
            return
        logger.warning(
            "queue file %s was deleted or replaced; opening it again", self._file
        )
        self._queue.close()
        self.directory.mkdir(parents=True, exist_ok=True)
        self._queue = self._open()
        self._file_id = _file_id(self._file)

    def enqueue(self, delivery_ids: Iterable[int]) -> list[int]:
        self._reopen_if_replaced()
        waiting = self._waiting_ids()
        put = []
        for delivery_id in delivery_ids:
            if delivery_id in waiting:
                continue
            self._queue.put({"delivery_id": int(delivery_id)})
            waiting.add(delivery_id)
            put.append(delivery_id)
        return put

    def _waiting_ids(self) -> set[int]:
        from persistqueue import AckStatus

        acked = int(AckStatus.acked)
        return {
            int(row["data"]["delivery_id"])
            for row in self._queue.queue()
            if int(row["status"]) < acked
        }

    def work(self, handle: Handler, *, burst: bool, stop: threading.Event) -> int:
        import persistqueue

        handled = 0
        while not stop.is_set():
            self._reopen_if_replaced()
            try:
                # A blocking get would wake only on puts from this process,
                # so the loop polls instead and checks ``stop`` in between.
                item = self._queue.get(block=False, raw=True)
            except persistqueue.Empty:
                if burst:
                    break
                stop.wait(POLL_SECONDS)
                continue

            _handle_safely(handle, item["data"])
            self._queue.ack(id=item["pqid"])
            handled += 1
            self._acked_since_clear += 1
            if self._acked_since_clear >= CLEAR_EVERY_ACKS:
                self.clear_acked()
        self.clear_acked()
        return handled

    def clear_acked(self) -> None:
        # persist-queue builds "LIMIT max_delete OFFSET keep_latest", and SQLite
        # accepts OFFSET only after a LIMIT, so max_delete must be a number.
        self._queue.clear_acked_data(max_delete=CLEAR_MAX_ROWS, keep_latest=KEEP_ACKED)
        self._acked_since_clear = 0

    def waiting_count(self) -> int:
        self._reopen_if_replaced()
        return len(self._waiting_ids())

    def close(self) -> None:
        self._queue.close()


def _file_id(path: Path) -> tuple[int, int] | None:
    """Return the device and inode of ``path``, or None if it does not exist."""
    try:
        status = os.stat(path)
    except FileNotFoundError:
        return None
    return (status.st_dev, status.st_ino)


class RQReminderQueue(ReminderQueue):
    """RQ jobs named ``<queue name>-delivery-<id>``, enqueued with ``unique=True``.

    Finished jobs are deleted at once (``result_ttl=0``), so a job id that
    still exists means a message is waiting, running or failed. A failed
    job is replaced, because the Delivery row shows the delivery is still due.
    """

    def __init__(
        self,
        redis_url: str,
        *,
        name: str = QUEUE_NAME,
        max_attempts: int = 3,
        connection: object = None,
    ) -> None:
        from redis import Redis
        from rq import Queue

        self.connection = connection or Redis.from_url(redis_url)
        self.queue = Queue(name, connection=self.connection)
        self.max_attempts = max_attempts

    def job_id(self, delivery_id: int) -> str:
        # RQ job ids are global to the Redis database, so the queue name
        # keeps two installations sharing one Redis apart.
        return f"{self.queue.name}-delivery-{delivery_id}"

    def enqueue(self, delivery_ids: Iterable[int]) -> list[int]:
        return [
            delivery_id
            for delivery_id in delivery_ids
            if self._enqueue_one(delivery_id)
        ]

    def _enqueue_one(self, delivery_id: int) -> bool:
        from rq import Retry
        from rq.exceptions import DuplicateJobError, NoSuchJobError
        from rq.job import Job, JobStatus

        from scheduler.jobs import deliver_job

        job_id = self.job_id(delivery_id)
        for _ in range(2):
            try:
                self.queue.enqueue(
                    deliver_job,
                    int(delivery_id),
                    job_id=job_id,
                    unique=True,
                    result_ttl=0,
                    # Retries cover a job whose worker died or raised, and
                    # run at once: RQ notices a dead worker only after the
                    # job's heartbeat expires, and an immediate retry needs
                    # no RQ scheduler. Send failures are retried by the
                    # sender through the Delivery row instead.
                    retry=Retry(max=self.max_attempts),
                    description=f"deliver reminder {delivery_id}",
                )
                return True
            except DuplicateJobError:
                pass
            try:
                status = Job.fetch(job_id, connection=self.connection).get_status()
            except NoSuchJobError:
                continue
            if status in (
                JobStatus.QUEUED,
                JobStatus.STARTED,
                JobStatus.SCHEDULED,
                JobStatus.DEFERRED,
            ):
                return False
            Job.fetch(job_id, connection=self.connection).delete()
        return False

    def work(self, handle: Handler, *, burst: bool, stop: threading.Event) -> int:
        from scheduler import jobs

        jobs.use_handler(handle)
        # SimpleWorker runs jobs in this process, where the database and the
        # transport are already set up; RQ installs its own SIGTERM and
        # SIGINT handlers for a warm shutdown, so ``stop`` is not consulted.
        worker = _worker_class()([self.queue], connection=self.connection)
        worker.work(burst=burst, logging_level=None)
        return worker.successful_job_count + worker.failed_job_count

    def waiting_count(self) -> int:
        from rq.registry import StartedJobRegistry

        started = StartedJobRegistry(queue=self.queue)
        return self.queue.count + started.count

    def close(self) -> None:
        self.connection.close()


def _worker_class() -> type:
    from rq import SimpleWorker

    class ReminderWorker(SimpleWorker):
        # NOTE: rq 3.0.0 listens for commands with a pubsub thread that blocks
        # up to 60 s per read, and redis-py 8.2.0 joins that thread on stop,
        # so every worker exit could hang for a minute. A 1 s read keeps the
        # exit short; drop this once rq passes a timeout to stop().
        def subscribe(self) -> None:
            self.pubsub = self.connection.pubsub()
            self.pubsub.subscribe(**{self.pubsub_channel_name: self.handle_payload})
            self.pubsub_thread = self.pubsub.run_in_thread(
                sleep_time=1,
                daemon=True,
                exception_handler=self._pubsub_exception_handler,
            )

    return ReminderWorker


def _handle_safely(handle: Handler, data: object) -> None:
    started = time.monotonic()
    try:
        delivery_id = int(data["delivery_id"])  # type: ignore[index]
    except (TypeError, KeyError, ValueError):
        logger.error("queue message %r has no delivery id; dropping it", data)
        return
    try:
        handle(delivery_id)
    except Exception:
        logger.exception(
            "handling delivery %s failed after %.0f ms; the next tick puts it back",
            delivery_id,
            (time.monotonic() - started) * 1000,
        )


def open_queue(settings: Settings, *, consumer: bool) -> ReminderQueue:
    """Open the queue REDIS_URL selects; ``consumer`` only for the worker."""
    if settings.redis_url:
        return RQReminderQueue(
            settings.redis_url, max_attempts=settings.send_max_attempts
        )
    return SQLiteReminderQueue(settings.resolved_queue_dir, consumer=consumer)
