"""Clock and reminder sender processes."""

from __future__ import annotations

import threading

import click
from flask import Flask, current_app
from flask.cli import with_appcontext


def init_app(app: Flask) -> None:
    """Register the scheduler's CLI commands on ``app``."""
    app.cli.add_command(send_reminders)
    app.cli.add_command(deliver_reminders)


@click.command("send-reminders")
@with_appcontext
def send_reminders() -> None:
    """Create the reminders that are due now and put them on the queue."""
    from core.db import database
    from scheduler.clock import tick
    from scheduler.queue import open_queue

    queue = open_queue(current_app.config["SETTINGS"], consumer=False)
    try:
        with database.connection_context():
            put = tick(queue)
    finally:
        queue.close()
    click.echo(f"Put {put} deliveries on the queue.")


@click.command("deliver-reminders")
@with_appcontext
def deliver_reminders() -> None:
    """Send everything on the queue, then exit.

    With the persist-queue (no REDIS_URL), run it only while no worker runs,
    because one queue folder supports one consuming process.
    """
    from scheduler.worker import run

    handled = run(current_app.config["SETTINGS"], burst=True, stop=threading.Event())
    click.echo(f"Handled {handled} deliveries.")
