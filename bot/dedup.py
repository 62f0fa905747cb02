"""Claim each Slack request once, so a retried command is not applied twice.

Slack resends a request that was not acknowledged in time, with the same body
and an ``X-Slack-Retry-Num`` header. The key of a request is its ``trigger_id``,
which Slack generates once per invocation, so the original and its retries
share it.
"""

from __future__ import annotations

import hashlib
import logging
from datetime import datetime, timedelta

import peewee as pw

from core.db import database
from core.models import BaseModel
from core.timeutil import utcnow

logger = logging.getLogger(__name__)

# Slack retries within minutes, and bolt rejects any request signed more than
# five minutes ago, so a day of keys covers every retry with a wide margin.
KEY_RETENTION = timedelta(days=1)


class SlackRequest(BaseModel):
    """A Slack request whose action was applied (or is being applied)."""

    key = pw.CharField(max_length=255, unique=True)
    created_at = pw.DateTimeField(default=utcnow, index=True)


def request_key(body: dict, raw_body: str) -> str:
    """Return the key that the original request and its retries share."""
    trigger_id = body.get("trigger_id")
    if trigger_id:
        return f"trigger:{trigger_id}"[:255]
    return "body:" + hashlib.sha256(raw_body.encode()).hexdigest()


def claim(key: str, now: datetime | None = None) -> bool:
    """Record ``key`` and return True, or return False if it was claimed before."""
    now = now or utcnow()
    try:
        with database.atomic():
            SlackRequest.create(key=key, created_at=now)
    except pw.IntegrityError:
        # The unique index on key: this request, or a retry of it, was
        # claimed already, possibly by another worker at the same moment.
        return False

    (
        SlackRequest.delete()
        .where(SlackRequest.created_at < now - KEY_RETENTION)
        .execute()
    )
    return True


def release(key: str) -> None:
    """Delete ``key`` after its action was rejected, so a retry runs again."""
    SlackRequest.delete().where(SlackRequest.key == key).execute()
