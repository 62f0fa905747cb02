"""Slack slash commands served by slack-bolt inside the Flask app."""

from flask import Flask


def init_app(app: Flask) -> None:
    """Register the Slack routes on ``app``."""
