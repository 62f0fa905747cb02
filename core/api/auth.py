"""Bearer authentication for the REST API."""

from __future__ import annotations

from datetime import timedelta

from flask import g, request

from core.api.problems import ApiError
from core.auth import (
    TOKEN_PREFIX,
    AuthenticationFailed,
    email_from_google_token,
    lookup_api_token,
)
from core.models import ApiToken
from core.tasks import Actor
from core.timeutil import utcnow

# last_used_at is a hint for admins, so it is written at most this often to
# keep a write off the hot path of every request.
LAST_USED_RESOLUTION = timedelta(minutes=5)


def current_actor(channel: str = "api") -> Actor:
    """Return the authenticated caller or raise a 401 problem."""
    cached = g.get("actor")
    if cached is not None:
        return cached
    header = request.headers.get("Authorization", "")
    scheme, _, credential = header.partition(" ")
    credential = credential.strip()
    if scheme.lower() != "bearer" or not credential:
        raise _unauthorized(
            "Send 'Authorization: Bearer <token>'; create a token with "
            "'flask --app wsgi create-token EMAIL'."
        )
    try:
        if credential.startswith(TOKEN_PREFIX):
            token = lookup_api_token(credential)
            _touch(token)
            actor = Actor(
                email=token.email, channel=channel, is_service=token.is_service
            )
        else:
            actor = Actor(email=email_from_google_token(credential), channel=channel)
    except AuthenticationFailed as exc:
        raise _unauthorized(str(exc)) from None
    g.actor = actor
    return actor


def _touch(token: ApiToken) -> None:
    now = utcnow()
    if token.last_used_at is None or now - token.last_used_at > LAST_USED_RESOLUTION:
        ApiToken.update(last_used_at=now).where(ApiToken.id == token.id).execute()


def _unauthorized(detail: str) -> ApiError:
    return ApiError(401, "Unauthorized", detail, headers={"WWW-Authenticate": "Bearer"})
