"""A queue folder deleted under running processes is opened again."""

from __future__ import annotations

import shutil
import threading

from scheduler.queue import SQLiteReminderQueue


def test_producer_puts_into_new_file(tmp_path):
    folder = tmp_path / "queue"
    producer = SQLiteReminderQueue(folder, consumer=False)
    producer.enqueue([1])

    shutil.rmtree(folder)
    put = producer.enqueue([1, 2])

    assert put == [1, 2]
    consumer = SQLiteReminderQueue(folder, consumer=True)
    handled: list[int] = []
    consumer.work(handled.append, burst=True, stop=threading.Event())
    assert handled == [1, 2]
    producer.close()
    consumer.close()


def test_running_consumer_sees_new_file(tmp_path):
    folder = tmp_path / "queue"
    consumer = SQLiteReminderQueue(folder, consumer=True)
    stop = threading.Event()
    handled: list[int] = []

    def handle(delivery_id: int) -> None:
        handled.append(delivery_id)
        stop.set()

    worker = threading.Thread(
        target=consumer.work, args=(handle,), kwargs={"burst": False, "stop": stop}
    )
    worker.start()
    shutil.rmtree(folder)
    producer = SQLiteReminderQueue(folder, consumer=False)
    producer.enqueue([7])

    # The consumer polls once a second; the wait only bounds a failure.
    worker.join(timeout=30)
    stopped = not worker.is_alive()
    stop.set()
    worker.join()

    assert stopped
    assert handled == [7]
    producer.close()
    consumer.close()


def test_waiting_count_reads_new_file(tmp_path):
    folder = tmp_path / "queue"
    producer = SQLiteReminderQueue(folder, consumer=False)
    producer.enqueue([1, 2, 3])

    shutil.rmtree(folder)

    assert producer.waiting_count() == 0
    producer.close()
