"""Routes under /tasks. Each request runs in one transaction (the core's)."""

from __future__ import annotations

import base64
import binascii
import json
from typing import Any

import peewee as pw
from flask import Blueprint, Flask, Response, jsonify, request
from marshmallow import ValidationError

from core import tasks as core_tasks
from core.api.auth import current_actor
from core.api.problems import ApiError
from core.api.schemas import (
    TaskCreateSchema,
    TaskUpdateSchema,
    task_detail,
    task_summary,
)
from core.models import Delivery, Event, Task
from core.query import QueryError, compile_filter, compile_query
from core.sqlcache import cached_select

bp = Blueprint("tasks", __name__)

DEFAULT_LIMIT = 50
MAX_LIMIT = 200
FILTER_PARAMETERS = (
    "status",
    "criticality",
    "thread_id",
    "assigned_to",
    "creator_email",
)
LIST_PARAMETERS = (*FILTER_PARAMETERS, "q", "limit", "cursor", "sort", "include_total")
SORTS = {
    "-id": (Task.id, True),
    "id": (Task.id, False),
    "-modified_at": (Task.modified_at, True),
    "modified_at": (Task.modified_at, False),
}
HISTORY_LIMIT = 200

_create_schema = TaskCreateSchema()
_update_schema = TaskUpdateSchema()


def init_app(app: Flask) -> None:
    app.register_blueprint(bp)


@bp.post("/tasks")
def create_task() -> tuple[Response, int, dict[str, str]]:
    """Create a task.
    ---
    post:
      summary: Create a task for an email thread
      security: [{bearer: []}]
      requestBody:
        required: true
        content:
          application/json:
            schema: TaskCreateSchema
          multipart/form-data:
            schema:
              allOf:
                - $ref: '#/components/schemas/TaskCreate'
                - type: object
                  properties:
                    html_file: {type: string, format: binary}
      responses:
        201:
          description: The task was created.
          content: {application/json: {schema: TaskDetailSchema}}
        400: {$ref: '#/components/responses/Problem'}
        401: {$ref: '#/components/responses/Problem'}
        403: {$ref: '#/components/responses/Problem'}
        409: {$ref: '#/components/responses/Problem'}
        413: {$ref: '#/components/responses/Problem'}
        415: {$ref: '#/components/responses/Problem'}
    """
    actor = current_actor()
    fields = _load(_create_schema, _read_body(allow_upload=True))
    task = core_tasks.create_task(actor, fields)
    return _detail_response(task), 201, {"Location": f"/tasks/{task.id}"}


@bp.get("/tasks/<int:task_id>")
def get_task(task_id: int) -> Response:
    """Read one task.
    ---
    get:
      summary: A task with its events and reminders
      security: [{bearer: []}]
      parameters:
        - {in: path, name: task_id, required: true, schema: {type: integer}}
      responses:
        200:
          description: The task; the ETag header identifies this version.
          headers:
            ETag: {schema: {type: string}}
          content: {application/json: {schema: TaskDetailSchema}}
        401: {$ref: '#/components/responses/Problem'}
        404: {$ref: '#/components/responses/Problem'}
    """
    current_actor()
    task = core_tasks.get_task(task_id)
    return _detail_response(task)


@bp.put("/tasks/<int:task_id>")
def update_task(task_id: int) -> Response:
    """Change a task.
    ---
    put:
      summary: Change some fields of a task; fields left out keep their value
      security: [{bearer: []}]
      parameters:
        - {in: path, name: task_id, required: true, schema: {type: integer}}
        - in: header
          name: If-Match
          schema: {type: string}
          description: The ETag from GET; a stale one returns 412.
      requestBody:
        required: true
        content:
          application/json:
            schema: TaskUpdateSchema
          multipart/form-data:
            schema: TaskUpdateSchema
      responses:
        200:
          description: The changed task.
          content: {application/json: {schema: TaskDetailSchema}}
        400: {$ref: '#/components/responses/Problem'}
        401: {$ref: '#/components/responses/Problem'}
        403: {$ref: '#/components/responses/Problem'}
        404: {$ref: '#/components/responses/Problem'}
        409: {$ref: '#/components/responses/Problem'}
        412: {$ref: '#/components/responses/Problem'}
        415: {$ref: '#/components/responses/Problem'}
    """
    actor = current_actor()
    fields = _load(_update_schema, _read_body(allow_upload=True))
    expected = _expected_version(task_id)
    try:
        task = core_tasks.update_task(actor, task_id, fields, expected_version=expected)
    except pw.IntegrityError:
        # The only unique column a client can change is thread_id.
        other = Task.for_thread(fields.get("thread_id", ""))
        raise core_tasks._thread_conflict(
            fields.get("thread_id", ""), other.id if other else None
        ) from None
    return _detail_response(task)


@bp.delete("/tasks/<int:task_id>")
def delete_task(task_id: int) -> tuple[str, int]:
    """Delete a task.
    ---
    delete:
      summary: Delete a task and its history (admins only)
      security: [{bearer: []}]
      parameters:
        - {in: path, name: task_id, required: true, schema: {type: integer}}
      responses:
        204: {description: The task was deleted.}
        401: {$ref: '#/components/responses/Problem'}
        403: {$ref: '#/components/responses/Problem'}
        404: {$ref: '#/components/responses/Problem'}
    """
    actor = current_actor()
    core_tasks.delete_task(actor, task_id)
    return "", 204


@bp.get("/tasks")
def list_tasks() -> Response:
    """List tasks.
    ---
    get:
      summary: Tasks matching filters, one page at a time
      security: [{bearer: []}]
      parameters:
        - in: query
          name: q
          schema: {type: string}
          description: >
            Boolean expression, e.g. (status:open OR status:fixed) AND NOT
            criticality:low. Fields: id, status, criticality, assigned_to,
            creator_email, thread_id, subject (substring), latest_message_id;
            a comma means any of; "me" stands for the caller's address.
        - {in: query, name: status, schema: {type: string}, description: "open,fixed or !closed"}
        - {in: query, name: criticality, schema: {type: string}}
        - {in: query, name: thread_id, schema: {type: string}}
        - {in: query, name: assigned_to, schema: {type: string}}
        - {in: query, name: creator_email, schema: {type: string}}
        - {in: query, name: limit, schema: {type: integer, minimum: 1, maximum: 200, default: 50}}
        - {in: query, name: cursor, schema: {type: string}}
        - in: query
          name: sort
          schema: {type: string, enum: [-id, id, -modified_at, modified_at], default: -id}
        - {in: query, name: include_total, schema: {type: boolean, default: false}}
      responses:
        200:
          description: One page of tasks.
          content: {application/json: {schema: TaskListSchema}}
        400: {$ref: '#/components/responses/Problem'}
        401: {$ref: '#/components/responses/Problem'}
    """
    actor = current_actor()
    args = request.args
    unknown = sorted(set(args) - set(LIST_PARAMETERS))
    if unknown:
        raise _bad_parameter(
            unknown[0],
            args[unknown[0]],
            f"is not a parameter; use {', '.join(LIST_PARAMETERS)}",
        )
    condition = _list_condition(args, actor.email)
    limit = _limit(args.get("limit"))
    sort = args.get("sort", "-id")
    if sort not in SORTS:
        raise _bad_parameter("sort", sort, f"must be one of {', '.join(SORTS)}")
    column, descending = SORTS[sort]

    query = Task.select(
        Task.id,
        Task.subject,
        Task.creator_email,
        Task.assigned_to,
        Task.status,
        Task.criticality,
        Task.thread_id,
        Task.latest_message_id,
        Task.created_at,
        Task.modified_at,
        Task.last_reminder_at,
        Task.next_reminder_at,
    )
    if condition is not None:
        query = query.where(condition)
    page_query = query
    if args.get("cursor"):
        page_query = page_query.where(_after_cursor(args["cursor"], column, descending))
    order = (
        (column.desc(), Task.id.desc()) if descending else (column.asc(), Task.id.asc())
    )
    rows = list(page_query.order_by(*order).limit(limit + 1))

    has_more = len(rows) > limit
    rows = rows[:limit]
    body: dict[str, Any] = {
        "tasks": task_summary.dump(rows, many=True),
        "limit": limit,
        "next_cursor": _cursor_for(rows[-1], column) if has_more else None,
    }
    if args.get("include_total", "").lower() in ("1", "true", "yes"):
        body["total"] = query.count()
    return jsonify(body)


def _list_condition(args, me: str) -> pw.Expression | None:
    conditions = []
    for name in FILTER_PARAMETERS:
        if name in args:
            try:
                conditions.append(compile_filter(name, args[name], me=me))
            except QueryError as exc:
                raise _bad_parameter(name, args[name], exc.message) from None
    if "q" in args:
        try:
            conditions.append(compile_query(args["q"], me=me))
        except QueryError as exc:
            raise ApiError(
                400,
                "Invalid query",
                f"q={args['q']!r} is invalid: {exc.message}.",
                position=exc.position,
                errors=[{"field": "q", "value": args["q"], "message": exc.message}],
            ) from None
    if not conditions:
        return None
    combined = conditions[0]
    for condition in conditions[1:]:
        combined = combined & condition
    return combined


def _limit(raw: str | None) -> int:
    if raw is None:
        return DEFAULT_LIMIT
    if not raw.isdigit() or not 1 <= int(raw) <= MAX_LIMIT:
        raise _bad_parameter(
            "limit", raw, f"must be a whole number from 1 to {MAX_LIMIT}"
        )
    return int(raw)


def _cursor_for(task: Task, column: pw.Field) -> str:
    value = getattr(task, column.name)
    if column.name != "id":
        value = value.isoformat()
    raw = json.dumps([value, task.id]).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _after_cursor(cursor: str, column: pw.Field, descending: bool) -> pw.Expression:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        value, last_id = json.loads(raw)
        if column.name != "id":
            value = column.python_value(value)
        if not isinstance(last_id, int):
            raise ValueError("id is not an integer")
    except (ValueError, TypeError, binascii.Error, json.JSONDecodeError):
        raise _bad_parameter(
            "cursor",
            cursor,
            "is not a cursor from this API; pass next_cursor unchanged",
        ) from None
    if descending:
        return (column < value) | ((column == value) & (Task.id < last_id))
    return (column > value) | ((column == value) & (Task.id > last_id))


def _read_body(*, allow_upload: bool) -> dict[str, Any]:
    """Return the request fields from a JSON or multipart body."""
    mimetype = request.mimetype
    if mimetype == "application/json":
        try:
            data = json.loads(request.get_data(cache=False) or b"null")
        except (ValueError, UnicodeDecodeError) as exc:
            raise ApiError(
                400, "Malformed JSON", f"The request body is not valid JSON: {exc}."
            ) from None
        if not isinstance(data, dict):
            raise ApiError(
                400,
                "Malformed JSON",
                f"The request body must be a JSON object, not {type(data).__name__}.",
            )
        return data
    if mimetype == "multipart/form-data" and allow_upload:
        data = request.form.to_dict()
        upload = request.files.get("html_file")
        extra_files = sorted(set(request.files) - {"html_file"})
        if extra_files:
            raise _bad_parameter(
                extra_files[0], "(file)", "only html_file may be uploaded"
            )
        if upload is not None:
            if "html" in data:
                raise _bad_parameter(
                    "html", data["html"][:40], "send html or html_file, not both"
                )
            content = upload.read()
            try:
                data["html"] = content.decode(
                    upload.mimetype_params.get("charset", "utf-8")
                )
            except (UnicodeDecodeError, LookupError):
                raise _bad_parameter(
                    "html_file",
                    upload.filename,
                    "must be UTF-8 text (or name its charset)",
                ) from None
        return data
    raise ApiError(
        415,
        "Unsupported media type",
        f"Content-Type {request.content_type or '(none)'!r} is not accepted; "
        "send application/json or multipart/form-data.",
    )


def _load(schema, data: dict[str, Any]) -> dict[str, Any]:
    try:
        return schema.load(data)
    except ValidationError as exc:
        errors = []
        for field, messages in sorted(exc.normalized_messages().items()):
            message = (
                " ".join(messages) if isinstance(messages, list) else str(messages)
            )
            if message == "Unknown field.":
                message = "is not a field of a task; check the spelling"
            errors.append(
                {"field": field, "value": data.get(field), "message": message}
            )
        first = errors[0]
        raise ApiError(
            400,
            "Invalid field",
            f"{first['field']}={first['value']!r} is invalid: {first['message']}",
            errors=errors,
        ) from None


def _expected_version(task_id: int) -> int | None:
    header = request.headers.get("If-Match")
    if header is None or header.strip() == "*":
        return None
    tag = header.strip().removeprefix("W/").strip('"')
    prefix = f"{task_id}-"
    if tag.startswith(prefix) and tag[len(prefix) :].isdigit():
        return int(tag[len(prefix) :])
    # An ETag that this API never issued matches no version of the task.
    return -1


def _detail_response(task: Task) -> Response:
    body = task_detail.dump(_with_history(task))
    response = jsonify(body)
    response.headers["ETag"] = task.etag
    return response


def _with_history(task: Task) -> dict[str, Any]:
    data = {
        name: getattr(task, name) for name in task_detail.fields if hasattr(task, name)
    }
    data["events"] = list(
        cached_select(
            Event,
            "task-events",
            lambda: Event.select().where(Event.task == 0).order_by(Event.id).limit(1),
            [task.id, HISTORY_LIMIT],
        )
    )
    data["reminders"] = list(
        cached_select(
            Delivery,
            "task-deliveries",
            lambda: (
                Delivery.select()
                .where(Delivery.task == 0)
                .order_by(Delivery.id)
                .limit(1)
            ),
            [task.id, HISTORY_LIMIT],
        )
    )
    return data


def _bad_parameter(name: str, value: Any, message: str) -> ApiError:
    return ApiError(
        400,
        "Invalid parameter",
        f"{name}={value!r} is invalid: {message}.",
        errors=[{"field": name, "value": value, "message": message}],
    )
