"""WSGI entry point: ``flask --app wsgi ...`` and ``gunicorn wsgi:app``."""

from __future__ import annotations

import sys

from flask import Flask

from core.auth import signing_key
from core.config import ConfigError, Settings, load_settings, use_settings
from core.db import database, open_database
from core.logconfig import configure_logging

APP_LOAD_ERROR = 4


def create_app(settings: Settings | None = None) -> Flask:
    """Build the Flask app: REST API, Gmail add-on, Slack and CLI commands."""
    settings = use_settings(settings or load_settings())
    # A bad key file stops start-up here rather than failing the first sign-in.
    signing_key(settings)
    open_database(settings.resolved_database_url)

    app = Flask("threadtask")
    app.config["SETTINGS"] = settings
    app.config["MAX_CONTENT_LENGTH"] = settings.max_upload_bytes

    @app.before_request
    def _connect() -> None:
        database.connect(reuse_if_open=True)

    @app.teardown_request
    def _close(exc: BaseException | None) -> None:
        if not database.is_closed():
            database.close()

    from addon import init_app as init_addon
    from bot import init_app as init_bot
    from core.api import init_app as init_api
    from core.cli import init_app as init_cli
    from core.mail import init_app as init_mail
    from scheduler import init_app as init_scheduler

    init_api(app)
    init_cli(app)
    init_mail(app)
    init_addon(app)
    init_bot(app)
    init_scheduler(app)
    return app


def __getattr__(name: str) -> Flask:
    # ``app`` is built on first access, so importing create_app (as the tests
    # do) does not open the configured database.
    if name != "app":
        raise AttributeError(name)
    try:
        settings = load_settings()
        configure_logging(settings.log_level)
        built = create_app(settings)
    except ConfigError as exc:
        print(exc, file=sys.stderr)
        # gunicorn stops for good when a worker exits with 4 ("App failed to
        # load"); with any other code it starts the worker again, forever.
        raise SystemExit(APP_LOAD_ERROR) from None
    globals()["app"] = built
    return built
