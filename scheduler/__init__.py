"""Clock and reminder sender processes."""

from flask import Flask


def init_app(app: Flask) -> None:
    """Register the scheduler's CLI commands on ``app``."""
