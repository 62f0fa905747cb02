"""Errors as ``application/problem+json`` documents (RFC 9457)."""

from __future__ import annotations

import logging
import math
from typing import Any

from flask import Flask, Response, json
from werkzeug.exceptions import HTTPException

from core.errors import Conflict, InvalidField, TaskError

logger = logging.getLogger(__name__)

PROBLEM_TYPE = "application/problem+json"


def problem(status: int, title: str, detail: str, **extra: Any) -> Response:
    """Build one problem document; every API error goes through here."""
    body = {"type": "about:blank", "title": title, "status": status, "detail": detail}
    body.update(extra)
    return Response(json.dumps(body), status=status, mimetype=PROBLEM_TYPE)


class ApiError(Exception):
    """An HTTP error raised by the API layer itself (auth, parsing)."""

    def __init__(
        self,
        status: int,
        title: str,
        detail: str,
        headers: dict[str, str] | None = None,
        **extra: Any,
    ) -> None:
        super().__init__(detail)
        self.status = status
        self.title = title
        self.detail = detail
        self.headers = headers or {}
        self.extra = extra


def init_app(app: Flask) -> None:
    @app.errorhandler(ApiError)
    def _api_error(exc: ApiError) -> Response:
        response = problem(exc.status, exc.title, exc.detail, **exc.extra)
        response.headers.update(exc.headers)
        return response

    @app.errorhandler(TaskError)
    def _task_error(exc: TaskError) -> Response:
        extra: dict[str, Any] = {}
        if isinstance(exc, InvalidField):
            extra["errors"] = [
                {
                    "field": error.field,
                    "value": echo_value(error.value),
                    "message": error.message,
                }
                for error in exc.all
            ]
        if isinstance(exc, Conflict) and exc.existing_task_id is not None:
            extra["existing_task_id"] = exc.existing_task_id
        return problem(exc.status, exc.title, exc.detail, **extra)

    @app.errorhandler(HTTPException)
    def _http_error(exc: HTTPException) -> Response:
        detail = exc.description or exc.name
        if exc.code == 413:
            limit = app.config.get("MAX_CONTENT_LENGTH")
            detail = (
                f"The request body is larger than the limit of {limit} bytes "
                "(MAX_UPLOAD_BYTES); send a smaller file."
            )
        response = problem(exc.code or 500, exc.name, detail)
        if exc.code == 405 and exc.valid_methods:
            response.headers["Allow"] = ", ".join(exc.valid_methods)
        return response

    @app.errorhandler(Exception)
    def _unexpected(exc: Exception) -> Response:
        logger.exception("unhandled error")
        return problem(500, "Internal server error", "The server failed; see its log.")


MAX_ECHOED_VALUE = 200


def echo_value(value: Any) -> Any:
    """Return a client's value for the errors list, cut to a sane length."""
    if isinstance(value, str) and len(value) > MAX_ECHOED_VALUE:
        return value[:MAX_ECHOED_VALUE] + "..."
    if value is None or isinstance(value, (str, int, bool)):
        return value
    if isinstance(value, float) and math.isfinite(value):
        return value
    text = repr(value)
    return text if len(text) <= MAX_ECHOED_VALUE else text[:MAX_ECHOED_VALUE] + "..."
