"""The contract both queue backends keep: persist-queue on disk and RQ on Redis."""

from __future__ import annotations

import threading

import pytest

BACKENDS = ["sqlite", "rq"]


@pytest.fixture(params=BACKENDS)
def queue_kind(request: pytest.FixtureRequest) -> str:
    return request.param


def drain(queue) -> list[int]:
    handled: list[int] = []
    queue.work(handled.append, burst=True, stop=threading.Event())
    return handled


def test_enqueue_returns_ids_put(make_queue, queue_kind):
    queue = make_queue(queue_kind)

    put = queue.enqueue([3, 1, 2])

    assert put == [3, 1, 2]
    assert queue.waiting_count() == 3


def test_waiting_delivery_not_put_twice(make_queue, queue_kind):
    queue = make_queue(queue_kind)
    queue.enqueue([7])

    again = queue.enqueue([7, 8])

    assert again == [8]
    assert queue.waiting_count() == 2


def test_work_handles_each_once_in_order(make_queue, queue_kind):
    queue = make_queue(queue_kind)
    queue.enqueue([5, 6, 7])

    handled = drain(queue)

    assert handled == [5, 6, 7]
    assert queue.waiting_count() == 0
    assert drain(queue) == []


def test_handled_delivery_can_be_put_again(make_queue, queue_kind):
    queue = make_queue(queue_kind)
    queue.enqueue([9])
    drain(queue)

    again = queue.enqueue([9])

    assert again == [9]
    assert drain(queue) == [9]


def test_failing_handler_does_not_block_next(make_queue, queue_kind):
    queue = make_queue(queue_kind)
    queue.enqueue([1, 2])
    handled: list[int] = []

    def handle(delivery_id: int) -> None:
        handled.append(delivery_id)
        if delivery_id == 1:
            raise RuntimeError("database went away")

    queue.work(handle, burst=True, stop=threading.Event())

    assert 2 in handled
    assert handled.index(1) < handled.index(2)


def test_messages_survive_reopening(make_queue, queue_kind):
    producer = make_queue(queue_kind, consumer=False)
    producer.enqueue([11, 12])
    producer.close() if queue_kind == "sqlite" else None

    consumer = make_queue(queue_kind)

    assert consumer.waiting_count() == 2
    assert drain(consumer) == [11, 12]


def test_producer_sees_consumer_waiting_ids(make_queue, queue_kind):
    consumer = make_queue(queue_kind)
    producer = make_queue(queue_kind, consumer=False)
    consumer.enqueue([21])

    again = producer.enqueue([21, 22])

    assert again == [22]
    assert drain(consumer) == [21, 22]


def test_stop_ends_a_waiting_sqlite_consumer(make_queue):
    # RQ workers stop on SIGTERM through their own handler instead.
    queue = make_queue("sqlite")
    stop = threading.Event()
    stop.set()

    handled = queue.work(lambda delivery_id: None, burst=False, stop=stop)

    assert handled == 0


def test_acked_messages_are_cleared(make_queue):
    from scheduler.queue import KEEP_ACKED

    queue = make_queue("sqlite")
    queue.enqueue(range(1, KEEP_ACKED + 51))

    drain(queue)

    assert queue._queue.acked_count() == KEEP_ACKED
