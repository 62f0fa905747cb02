"""REST API for tasks."""

from flask import Flask


def init_app(app: Flask) -> None:
    from core.api import openapi, problems, tasks

    problems.init_app(app)
    tasks.init_app(app)
    openapi.init_app(app)
