"""The clock process: ``python -m scheduler.clock [--once]``.

It runs three jobs with ``schedule``: the reminder tick (every
REMINDER_TICK_MINUTES), the hand-over of due reminders and deliveries to
the queue (every 30 seconds, so an assignment notice leaves within a
minute) and the mail poll (every MAIL_POLL_MINUTES). A job that raises is
logged with its traceback and runs again at its next time; it never stops
the loop.
With Slack on and SLACK_NOTIFY_ASSIGNEE=true, the assignee of each task
that the mail poll creates or assigns also gets a Slack direct message.
"""

from __future__ import annotations

import argparse
import logging
import sys
import threading
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

import schedule

from core.config import ConfigError, Settings
from core.db import database, optimize_database
from core.reminders import (
    enqueue_due_reminders,
    in_flight_delivery_ids,
    queue_due_deliveries,
)
from core.timeutil import parse_utc, utcnow
from scheduler.queue import ReminderQueue, open_queue
from scheduler.runtime import install_stop_handlers, start

if TYPE_CHECKING:
    from bot.notify import AssignmentNotifier

logger = logging.getLogger(__name__)

DISPATCH_SECONDS = 30
RECOVERY_GRACE = timedelta(minutes=2)
STATISTICS_HOURS = 6
# The loop never sleeps longer than this, so a stop request is seen quickly.
SLEEP_SLICE_SECONDS = 1.0


def tick(queue: ReminderQueue, now: datetime | None = None) -> int:
    """Mark due reminders, queue them, and put back messages that were lost.

    Returns how many messages were put on the queue.
    """
    now = now or utcnow()
    enqueue_due_reminders(now)
    return dispatch(queue, now)


def dispatch(queue: ReminderQueue, now: datetime | None = None) -> int:
    """Put due reminders and pending, due deliveries on the queue.

    A delivery that is queued or being sent but has no message waiting lost
    it to a wiped queue, a flushed Redis or a worker that failed to reach
    the database, so it is put back too. The queue skips ids it still has,
    and the grace period leaves alone what a second clock is putting now.
    Returns how many messages were put on the queue.
    """
    now = now or utcnow()
    total = 0
    while True:
        ids = queue_due_deliveries(now)
        if not ids:
            break
        total += len(queue.enqueue(ids))
    recovered = queue.enqueue(in_flight_delivery_ids(now - RECOVERY_GRACE))
    if recovered:
        logger.warning(
            "put %d deliveries whose queue message was lost back on the queue",
            len(recovered),
        )
    if total:
        logger.info("put %d deliveries on the queue", total)
    return total + len(recovered)


# A year after the latest --now, every reminder interval still fits before
# the largest date Python can hold.
LATEST_NOW = datetime(9000, 1, 1)


def _parse_now(value: str) -> datetime:
    try:
        now = parse_utc(value)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{value!r} is not a time; use ISO 8601 such as 2026-03-02T09:30:00Z"
        ) from None
    if now >= LATEST_NOW:
        raise argparse.ArgumentTypeError(
            f"{value!r} is too far ahead; use a time before {LATEST_NOW.year}"
        )
    return now


def poll_mail() -> None:
    # Imported here so a clock without the mail reader still sends reminders.
    from core.mail import poll_mailbox_once

    poll_mailbox_once()


def run_job(name: str, job: Callable[[], object]) -> bool:
    """Run one job in its own database connection; log and swallow failures."""
    try:
        with database.connection_context():
            job()
    except Exception:
        logger.exception("clock job %s failed; it runs again at its next time", name)
        return False
    return True


def jobs_for(
    queue: ReminderQueue, now: datetime | None = None
) -> dict[str, Callable[[], object]]:
    return {
        "reminder-tick": lambda: tick(queue, now),
        "dispatch": lambda: dispatch(queue, now),
        "mail-poll": poll_mail,
        "planner-statistics": optimize_database,
    }


def build_scheduler(settings: Settings, queue: ReminderQueue) -> schedule.Scheduler:
    jobs = jobs_for(queue)
    scheduler = schedule.Scheduler()
    scheduler.every(settings.reminder_tick_minutes).minutes.do(
        run_job, "reminder-tick", jobs["reminder-tick"]
    )
    scheduler.every(DISPATCH_SECONDS).seconds.do(run_job, "dispatch", jobs["dispatch"])
    scheduler.every(settings.mail_poll_minutes).minutes.do(
        run_job, "mail-poll", jobs["mail-poll"]
    )
    # Keeps SQLite's index choices right as the tables grow.
    scheduler.every(STATISTICS_HOURS).hours.do(
        run_job, "planner-statistics", jobs["planner-statistics"]
    )
    return scheduler


def run_once(queue: ReminderQueue, now: datetime | None = None) -> bool:
    """Run every job once, in order; return False if any failed.

    ``now`` replaces the current time for the reminder jobs only.
    """
    results = [run_job(name, job) for name, job in jobs_for(queue, now).items()]
    return all(results)


def run_forever(
    settings: Settings, queue: ReminderQueue, stop: threading.Event
) -> None:
    scheduler = build_scheduler(settings, queue)
    # Start with one run of everything: a clock that was down catches up now
    # instead of a whole tick later.
    scheduler.run_all()
    while not stop.is_set():
        scheduler.run_pending()
        idle = scheduler.idle_seconds
        stop.wait(min(SLEEP_SLICE_SECONDS, max(idle or 0.0, 0.0)) or 0.05)
    logger.info("clock stopped")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m scheduler.clock",
        description="Run the reminder tick, the queue hand-over and the mail poll.",
    )
    parser.add_argument(
        "--once", action="store_true", help="run every job once and exit"
    )
    parser.add_argument(
        "--now",
        type=_parse_now,
        help="with --once: the UTC time the reminder jobs take as now, "
        "for example 2026-03-02T09:30:00Z, to try out reminders that are "
        "not due yet",
    )
    args = parser.parse_args(argv)
    if args.now and not args.once:
        parser.error("--now works only together with --once")

    stop = threading.Event()
    install_stop_handlers(stop)
    settings = start("clock")
    notifier = start_slack_notices(settings)
    # The clock only produces: it must not resume the worker's messages.
    queue = open_queue(settings, consumer=False)
    try:
        if args.once:
            return 0 if run_once(queue, args.now) else 1
        run_forever(settings, queue, stop)
    finally:
        queue.close()
        if notifier is not None:
            # Sends the direct messages still queued before the process exits.
            notifier.shutdown()
    return 0


def start_slack_notices(settings: Settings) -> AssignmentNotifier | None:
    """Send Slack direct messages for the tasks the mail poll assigns.

    Returns None when Slack or SLACK_NOTIFY_ASSIGNEE is off. A half-configured
    Slack stops the start-up with exit status 2, as other invalid settings do.
    """
    from bot import start_assignment_notices

    try:
        return start_assignment_notices(settings)
    except ConfigError as exc:
        print(exc, file=sys.stderr)
        raise SystemExit(2) from None


if __name__ == "__main__":
    raise SystemExit(main())
