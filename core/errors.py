"""Named failures of the task core. The API maps each to an HTTP status."""

from __future__ import annotations


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

    def __init__(self, field: str, value: object, message: str) -> None:
        super().__init__(f"{field}={value!r} is invalid: {message}.")
        self.field = field
        self.value = value
        self.message = message


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
