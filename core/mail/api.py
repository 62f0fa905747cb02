"""``GET /mail/errors``: the quarantined messages, for people and tools."""

from __future__ import annotations

from flask import Blueprint, Response, jsonify, request

from core.api.auth import current_actor
from core.api.problems import ApiError
from core.mail.models import QuarantinedMessage
from core.timeutil import isoformat

blueprint = Blueprint("mail", __name__)

DEFAULT_LIMIT = 50
MAX_LIMIT = 500


@blueprint.get("/mail/errors")
def list_errors() -> Response:
    """List quarantined messages, newest first; needs a bearer token."""
    current_actor()
    limit = _limit(request.args.get("limit"))
    rows = (
        QuarantinedMessage.select()
        .order_by(QuarantinedMessage.created_at.desc(), QuarantinedMessage.id.desc())
        .limit(limit)
    )
    return jsonify(
        {
            "items": [
                {
                    "id": row.id,
                    "source": row.source,
                    "source_id": row.source_id,
                    "message_id": row.message_id,
                    "size": row.size,
                    "error": row.error,
                    "raw_path": row.raw_path,
                    "created_at": isoformat(row.created_at),
                }
                for row in rows
            ]
        }
    )


def _limit(raw: str | None) -> int:
    if raw is None:
        return DEFAULT_LIMIT
    if not raw.isdigit() or not 1 <= int(raw) <= MAX_LIMIT:
        raise ApiError(
            400,
            "Invalid parameter",
            f"limit={raw!r} is invalid: use a whole number from 1 to {MAX_LIMIT}.",
        )
    return int(raw)
