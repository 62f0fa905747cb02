"""Logging set-up shared by the web, clock and worker entry points."""

from __future__ import annotations

import logging

# persist-queue logs its optional extras at INFO each time a queue opens.
QUIET_LOGGERS = ("persistqueue",)


def configure_logging(level: str = "INFO") -> None:
    """Log to stderr at ``level`` unless the host already set up handlers."""
    if not logging.getLogger().handlers:
        logging.basicConfig(
            level=level,
            format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        )
    for name in QUIET_LOGGERS:
        logging.getLogger(name).setLevel(logging.WARNING)
