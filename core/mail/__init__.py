"""The mail reader: turns emails in the shared mailbox into tasks."""

from __future__ import annotations

from flask import Flask

from core.mail.poll import poll_mailbox_once

__all__ = ["init_app", "poll_mailbox_once"]


def init_app(app: Flask) -> None:
    """Register the mail CLI commands and the ``/mail/errors`` endpoint."""
    from core.mail import api, cli

    cli.init_app(app)
    app.register_blueprint(api.blueprint)
