"""UTC time helpers: the database stores naive datetimes that are UTC."""

from __future__ import annotations

from datetime import UTC, datetime


def utcnow() -> datetime:
    """Return the current time as a naive UTC datetime, as stored."""
    return datetime.now(UTC).replace(tzinfo=None, microsecond=0)


def isoformat(value: datetime | None) -> str | None:
    """Format a stored naive UTC datetime as ISO 8601 with a ``Z`` suffix."""
    if value is None:
        return None
    return value.replace(tzinfo=None).isoformat() + "Z"


def parse_utc(value: str) -> datetime:
    """Parse an ISO 8601 time and return it as naive UTC."""
    parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    if parsed.tzinfo is not None:
        parsed = parsed.astimezone(UTC).replace(tzinfo=None)
    return parsed
