"""Routes under /tasks. Each request runs in one transaction (the core's)."""

from __future__ import annotations

import base64
import binascii
import json
import weakref
from collections import OrderedDict
from datetime import datetime
from typing import Any

import peewee as pw
from flask import Blueprint, Flask, Response, jsonify, request
from marshmallow import ValidationError

from core import tasks as core_tasks
from core.api.auth import current_actor
from core.api.problems import ApiError, echo_value
from core.api.schemas import (
    TaskCreateSchema,
    TaskUpdateSchema,
    task_detail,
    task_summary,
)
from core.db import database
from core.errors import show_value
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
    task = core_tasks.update_task(actor, task_id, fields, expected_version=expected)
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
    expected = _expected_version(task_id)
    core_tasks.delete_task(actor, task_id, expected_version=expected)
    response = Response(status=204)
    del response.headers["Content-Type"]
    return response


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
    for name in args:
        if len(args.getlist(name)) > 1:
            raise _bad_parameter(
                name,
                args.getlist(name),
                "is given more than once; use a comma-separated list",
            )
    unknown = sorted(set(args) - set(LIST_PARAMETERS))
    if unknown:
        raise _bad_parameter(
            unknown[0],
            args[unknown[0]],
            f"is not a parameter; use {', '.join(LIST_PARAMETERS)}",
        )
    cache_key = None
    if not args.get("cursor"):
        cache_key = (tuple(sorted(args.items(multi=True))), actor.email)
        cached = _first_pages.get(cache_key)
        if cached is not None:
            sql, params, limit, sort, count_query = cached
            rows_query = Task.raw(sql, *params)
            return _page_response(rows_query, args, limit, sort, count_query)
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
        page_query = page_query.where(
            _after_cursor(args["cursor"], sort, column, descending)
        )
    order = (
        (column.desc(), Task.id.desc()) if descending else (column.asc(), Task.id.asc())
    )
    page_query = page_query.order_by(*order).limit(limit + 1)
    if cache_key is not None:
        sql, params = page_query.sql()
        _first_pages.put(cache_key, (sql, params, limit, sort, query))
    return _page_response(page_query, args, limit, sort, query)


def _page_response(
    rows_query: Any, args: Any, limit: int, sort: str, query: pw.ModelSelect
) -> Response:
    column, _ = SORTS[sort]
    rows = list(rows_query)
    has_more = len(rows) > limit
    rows = rows[:limit]
    body: dict[str, Any] = {
        "tasks": task_summary.dump(rows, many=True),
        "limit": limit,
        "next_cursor": _cursor_for(rows[-1], sort, column) if has_more else None,
    }
    if args.get("include_total", "").lower() in ("1", "true", "yes"):
        body["total"] = query.count()
    return jsonify(body)


class _FirstPageCache:
    """The SQL of recent first pages, per database and at most ``size`` of them.

    A repeated list then skips parsing its filters and rendering its SQL,
    which cost more than running the query. Later pages depend on their
    cursor and are built each time.
    """

    def __init__(self, size: int) -> None:
        self.size = size
        self._by_database: weakref.WeakKeyDictionary[pw.Database, OrderedDict] = (
            weakref.WeakKeyDictionary()
        )

    def get(self, key: tuple) -> tuple | None:
        entries = self._by_database.get(database.obj)
        if entries is None or key not in entries:
            return None
        entries.move_to_end(key)
        return entries[key]

    def put(self, key: tuple, entry: tuple) -> None:
        entries = self._by_database.setdefault(database.obj, OrderedDict())
        entries[key] = entry
        if len(entries) > self.size:
            entries.popitem(last=False)


_first_pages = _FirstPageCache(size=256)


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


def _cursor_for(task: Task, sort: str, column: pw.Field) -> str:
    value = getattr(task, column.name)
    if column.name != "id":
        value = value.isoformat()
    raw = json.dumps([sort, value, task.id]).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _after_cursor(
    cursor: str, sort: str, column: pw.Field, descending: bool
) -> pw.Expression:
    invalid = _bad_parameter(
        "cursor", cursor, "is not a cursor from this API; pass next_cursor unchanged"
    )
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        cursor_sort, value, last_id = json.loads(raw)
    except (ValueError, TypeError, binascii.Error):
        raise invalid from None
    if cursor_sort != sort:
        raise _bad_parameter(
            "cursor",
            cursor,
            f"was made for sort={cursor_sort}; send the same sort with it",
        )
    if not _is_task_id(last_id):
        raise invalid
    if column.name == "id":
        if not _is_task_id(value):
            raise invalid
    else:
        try:
            value = datetime.fromisoformat(value)
        except (TypeError, ValueError):
            raise invalid from None
    if descending:
        return (column < value) | ((column == value) & (Task.id < last_id))
    return (column > value) | ((column == value) & (Task.id > last_id))


def _is_task_id(value: Any) -> bool:
    return (
        isinstance(value, int)
        and not isinstance(value, bool)
        and 0 <= value <= core_tasks.MAX_TASK_ID
    )


def _read_body(*, allow_upload: bool) -> dict[str, Any]:
    """Return the request fields from a JSON or multipart body."""
    mimetype = request.mimetype
    if mimetype == "application/json":
        return _read_json()
    if mimetype == "multipart/form-data" and allow_upload:
        return _read_multipart()
    raise ApiError(
        415,
        "Unsupported media type",
        f"Content-Type {request.content_type or '(none)'!r} is not accepted; "
        "send application/json or multipart/form-data.",
    )


def _reject_constant(name: str) -> None:
    raise ValueError(f"{name} is not a JSON value")


def _read_json() -> dict[str, Any]:
    raw = request.get_data(cache=False)
    if not raw.strip():
        raise ApiError(
            400, "Malformed JSON", "The request body is empty; send a JSON object."
        )
    try:
        data = json.loads(raw, parse_constant=_reject_constant)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ApiError(
            400, "Malformed JSON", f"The request body is not valid JSON: {exc}."
        ) from None
    except RecursionError:
        raise ApiError(
            400, "Malformed JSON", "The request body is nested too deeply."
        ) from None
    if not isinstance(data, dict):
        kind = JSON_KINDS.get(type(data), "a JSON value")
        raise ApiError(
            400,
            "Malformed JSON",
            f"The request body must be a JSON object, not {kind}.",
        )
    return data


JSON_KINDS = {
    list: "an array",
    str: "a string",
    int: "a number",
    float: "a number",
    bool: "a boolean",
    type(None): "null",
}


def _read_multipart() -> dict[str, Any]:
    if "boundary" not in request.mimetype_params:
        raise ApiError(
            400,
            "Malformed multipart body",
            "The multipart/form-data body has no boundary; let your HTTP client "
            "build the Content-Type header.",
        )
    form = request.form
    files = request.files
    for name in form:
        if len(form.getlist(name)) > 1:
            raise _bad_parameter(name, form.getlist(name), "is given more than once")
    if "html_file" in form:
        raise _bad_parameter(
            "html_file",
            form["html_file"],
            "must be a file upload (curl -F html_file=@FILE)",
        )
    extra_files = sorted(set(files) - {"html_file"})
    if extra_files:
        raise _bad_parameter(extra_files[0], "(file)", "only html_file may be uploaded")
    data: dict[str, Any] = form.to_dict()
    uploads = files.getlist("html_file")
    if len(uploads) > 1:
        raise _bad_parameter("html_file", "(files)", "upload one file, not several")
    if uploads:
        if "html" in data:
            raise _bad_parameter(
                "html", data["html"], "send html or html_file, not both"
            )
        upload = uploads[0]
        try:
            data["html"] = upload.read().decode(
                upload.mimetype_params.get("charset", "utf-8")
            )
        except (UnicodeDecodeError, LookupError):
            raise _bad_parameter(
                "html_file", upload.filename, "must be UTF-8 text (or name its charset)"
            ) from None
    return data


def _load(schema, data: dict[str, Any]) -> dict[str, Any]:
    try:
        return schema.load(data)
    except ValidationError as exc:
        creating = isinstance(schema, TaskCreateSchema)
        errors = []
        for field, messages in sorted(exc.normalized_messages().items()):
            message = (
                " ".join(messages) if isinstance(messages, list) else str(messages)
            )
            if message == "Unknown field.":
                message = core_tasks.unsettable_reason(
                    field, creating, tuple(schema.fields)
                )
            errors.append(
                {"field": field, "value": data.get(field), "message": message}
            )
        first = errors[0]
        raise ApiError(
            400,
            "Invalid field",
            f"{first['field']}={show_value(first['value'])} is invalid: "
            f"{first['message']}",
            errors=[{**e, "value": echo_value(e["value"])} for e in errors],
        ) from None


def _expected_version(task_id: int) -> int | None:
    """Return the version that If-Match requires, or None without a condition.

    If-Match uses the strong comparison of RFC 9110, so weak ETags never match.
    With several ETags, the one naming this task's current version (if any)
    is the one that must hold.
    """
    header = request.headers.get("If-Match")
    if header is None or header.strip() == "*":
        return None
    versions = []
    for tag in (part.strip() for part in header.split(",")):
        value = tag.strip('"')
        prefix = f"{task_id}-"
        if (
            tag.startswith('"')
            and value.startswith(prefix)
            and value[len(prefix) :].isdigit()
        ):
            versions.append(int(value[len(prefix) :]))
    if not versions:
        raise ApiError(
            412,
            "Precondition failed",
            f"If-Match {header!r} names no version of task {task_id}; send the "
            "ETag header of GET /tasks/{task_id} unchanged.".replace(
                "{task_id}", str(task_id)
            ),
        )
    current = Task.select(Task.version).where(Task.id == task_id).scalar()
    return current if current in versions else versions[0]


def _detail_response(task: Task) -> Response:
    body = task_detail.dump(_with_history(task))
    response = jsonify(body)
    response.headers["ETag"] = task.etag
    return response


def _with_history(task: Task) -> dict[str, Any]:
    data = {
        name: getattr(task, name) for name in task_detail.fields if hasattr(task, name)
    }
    # The latest entries, oldest first: a task reminded every 30 minutes for
    # weeks has thousands, and the newest are the ones a reader wants.
    data["events"] = list(
        cached_select(
            Event,
            "task-events",
            lambda: (
                Event.select().where(Event.task == 0).order_by(Event.id.desc()).limit(1)
            ),
            [task.id, HISTORY_LIMIT],
        )
    )[::-1]
    data["reminders"] = list(
        cached_select(
            Delivery,
            "task-deliveries",
            lambda: (
                Delivery.select()
                .where(Delivery.task == 0)
                .order_by(Delivery.id.desc())
                .limit(1)
            ),
            [task.id, HISTORY_LIMIT],
        )
    )[::-1]
    return data


def _bad_parameter(name: str, value: Any, message: str) -> ApiError:
    return ApiError(
        400,
        "Invalid parameter",
        f"{name}={value!r} is invalid: {message}.",
        errors=[{"field": name, "value": value, "message": message}],
    )
