"""Flask CLI commands of the mail reader."""

from __future__ import annotations

import click
from flask import Flask

from core.config import ConfigError, get_settings
from core.db import database
from core.mail.models import QuarantinedMessage
from core.mail.poll import PollSkipped, poll_mailbox_or_raise
from core.mail.poll import force_unlock as release_poll_lock
from core.timeutil import isoformat


def init_app(app: Flask) -> None:
    app.cli.add_command(poll_mail)
    app.cli.add_command(mail_errors)
    app.cli.add_command(gmail_authorize)


@click.command("poll-mail")
@click.option(
    "--force-unlock",
    is_flag=True,
    help="Release the poll lock first, whoever holds it. Use it only when the "
    "holder named by a skipped poll is gone.",
)
def poll_mail(force_unlock: bool) -> None:
    """Read the new mail once (MAIL_BACKEND), then exit.

    Exits with status 1 when another poll holds the lock.
    """
    if force_unlock:
        holder = release_poll_lock()
        click.echo(
            f"Released the poll lock of {holder}."
            if holder
            else "The poll lock was free."
        )
    try:
        handled = poll_mailbox_or_raise(get_settings())
    except PollSkipped as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"Handled {handled} message{'s' if handled != 1 else ''}.")


@click.command("mail-errors")
@click.option(
    "--limit", default=50, show_default=True, help="Number of messages to list."
)
def mail_errors(limit: int) -> None:
    """List quarantined messages, newest first: id, time, source, error, file."""
    with database.connection_context():
        rows = list(
            QuarantinedMessage.select()
            .order_by(
                QuarantinedMessage.created_at.desc(), QuarantinedMessage.id.desc()
            )
            .limit(limit)
        )
    if not rows:
        click.echo("No quarantined messages.")
        return
    for row in rows:
        click.echo(
            f"{row.id}\t{isoformat(row.created_at)}\t{row.source}:{row.source_id}"
            f"\t{row.message_id}\t{row.size} bytes\t{row.error}\t{row.raw_path}"
        )


@click.command("gmail-authorize")
@click.option(
    "--port",
    default=0,
    show_default=True,
    help="Port of the local redirect server on 127.0.0.1; 0 picks a free one.",
)
@click.option(
    "--no-browser",
    is_flag=True,
    help="Print the consent URL instead of opening a browser.",
)
def gmail_authorize(port: int, no_browser: bool) -> None:
    """Authorise the Gmail mailbox once and write GMAIL_TOKEN_FILE."""
    from core.gmail import authorize

    settings = get_settings()
    try:
        path = authorize(settings, port=port, open_browser=not no_browser)
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"Wrote the Gmail token to {path}. Set MAIL_BACKEND=gmail to read mail.")
