"""Gmail add-on: card endpoints that Google calls over HTTP."""

from flask import Flask


def init_app(app: Flask) -> None:
    """Register the add-on routes on ``app``."""
