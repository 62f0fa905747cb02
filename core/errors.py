"""Named failures of the task core. The API maps each to an HTTP status."""

from __future__ import annotations

MAX_SHOWN_VALUE = 80


def show_value(value: object) -> str:
    """Format a client's value for a message: JSON-like and cut to a length."""
    if value is None:
        text = "null"
    elif isinstance(value, bool):
        text = "true" if value else "false"
    elif isinstance(value, str):
        text = repr(
            value if len(value) <= MAX_SHOWN_VALUE else value[:MAX_SHOWN_VALUE] + "..."
        )
    else:
        text = repr(value)
        if len(text) > MAX_SHOWN_VALUE:
            text = text[:MAX_SHOWN_VALUE] + "..."
    return text


class TaskError(Exception):
    """Base class: ``detail`` is a full sentence meant for a person."""

    status = 400
    title = "Bad request"

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


class InvalidField(TaskError):
    """A field has a value the core does not accept."""

    title = "Invalid field"

    def __init__(
        self,
        field: str,
        value: object,
        message: str,
        others: list[InvalidField] | None = None,
    ) -> None:
        super().__init__(f"{field}={show_value(value)} is invalid: {message}.")
        self.field = field
        self.value = value
        self.message = message
        # Further invalid fields of the same request, reported together.
        self.others = others or []

    @property
    def all(self) -> list[InvalidField]:
        return [self, *self.others]


class Forbidden(TaskError):
    status = 403
    title = "Forbidden"


class NotFound(TaskError):
    status = 404
    title = "Not found"


class Conflict(TaskError):
    status = 409
    title = "Conflict"

    def __init__(self, detail: str, existing_task_id: int | None = None) -> None:
        super().__init__(detail)
        self.existing_task_id = existing_task_id


class PreconditionFailed(TaskError):
    status = 412
    title = "Precondition failed"
