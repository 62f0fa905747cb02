"""Start-up shared by the clock and the worker: logging, settings, signals."""

from __future__ import annotations

import logging
import signal
import sys
import threading
from types import FrameType

from core.config import ConfigError, Settings, load_settings, use_settings
from core.db import open_database
from core.logconfig import configure_logging

logger = logging.getLogger(__name__)


def check_settings(settings: Settings) -> list[str]:
    """Return one line per reminder setting that cannot work, with a hint."""
    problems = []
    if not settings.public_base_url.startswith(("http://", "https://")):
        problems.append(
            f"PUBLIC_BASE_URL={settings.public_base_url!r} must start with http:// "
            "or https://, because reminder emails link to the task there"
        )
    if settings.mail_transport == "gmail":
        try:
            from core.gmail import build_gmail_service  # noqa: F401
        except ImportError:
            problems.append(
                "MAIL_TRANSPORT=gmail needs core.gmail, which is not installed; "
                "use MAIL_TRANSPORT=outbox"
            )
    return problems


def start(process: str) -> Settings:
    """Load and check settings and open the database, or exit with status 2."""
    try:
        settings = use_settings(load_settings())
    except ConfigError as exc:
        print(exc, file=sys.stderr)
        raise SystemExit(2) from None
    configure_logging(settings.log_level)
    problems = check_settings(settings)
    if problems:
        print("invalid configuration:", file=sys.stderr)
        for line in problems:
            print(f"  {line}", file=sys.stderr)
        raise SystemExit(2)
    open_database(settings.resolved_database_url)
    queue = (
        "RQ on REDIS_URL" if settings.redis_url else str(settings.resolved_queue_dir)
    )
    logger.info(
        "%s starting, queue: %s, transport: %s", process, queue, settings.mail_transport
    )
    return settings


def install_stop_handlers(stop: threading.Event) -> None:
    """Make SIGTERM and SIGINT set ``stop``; the loop finishes its item first."""

    def request_stop(signum: int, frame: FrameType | None) -> None:
        logger.info(
            "received %s, stopping after the current step", signal.Signals(signum).name
        )
        stop.set()

    signal.signal(signal.SIGTERM, request_stop)
    signal.signal(signal.SIGINT, request_stop)
