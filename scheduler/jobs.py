"""The function RQ workers run for each queued delivery."""

from __future__ import annotations

from scheduler.queue import Handler

_handler: Handler | None = None


def use_handler(handler: Handler) -> None:
    """Make ``handler`` the one RQ jobs in this process call."""
    global _handler
    _handler = handler


def deliver_job(delivery_id: int) -> None:
    """Deliver one reminder; raises only when the handler does, so RQ retries."""
    global _handler
    if _handler is None:
        # Started by ``rq worker`` instead of ``python -m scheduler.worker``.
        from scheduler.worker import build_handler

        _handler = build_handler()
    _handler(delivery_id)
