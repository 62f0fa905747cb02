"""Identify a Slack user by the verified email address of their profile."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError, SlackClientError

from core.emails import normalize_email

logger = logging.getLogger(__name__)

# Profiles change rarely, and a changed email takes effect after this long.
PROFILE_TTL_SECONDS = 600.0


class IdentityUnavailable(Exception):
    """The users.info call for ``user_id`` failed with ``error``.

    ``error`` is Slack's error code, such as ``user_not_found``, or the
    text of the network error. The caller logs it and tells the user.
    """

    def __init__(self, user_id: str, error: str) -> None:
        super().__init__(f"users.info failed for Slack user {user_id}: {error}")
        self.user_id = user_id
        self.error = error

    @property
    def not_found(self) -> bool:
        return self.error == "user_not_found"


@dataclass(frozen=True)
class SlackIdentity:
    """A Slack user and the verified email they act as ("" if none)."""

    user_id: str
    email: str
    reason: str = ""


class IdentityCache:
    """Looks users up with ``users.info`` and caches each result for ``ttl_seconds``."""

    def __init__(
        self,
        ttl_seconds: float = PROFILE_TTL_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.ttl_seconds = ttl_seconds
        self.clock = clock
        self._entries: dict[str, tuple[float, SlackIdentity]] = {}
        self._lock = threading.Lock()

    def lookup(self, client: WebClient, user_id: str) -> SlackIdentity:
        """Return the identity of ``user_id``, from the cache if still fresh."""
        now = self.clock()
        with self._lock:
            entry = self._entries.get(user_id)
        if entry and now - entry[0] < self.ttl_seconds:
            return entry[1]

        identity = _fetch(client, user_id)
        with self._lock:
            self._entries[user_id] = (now, identity)
            expired = [
                key
                for key, (stored, _) in self._entries.items()
                if now - stored >= self.ttl_seconds
            ]
            for key in expired:
                del self._entries[key]
        return identity


def _fetch(client: WebClient, user_id: str) -> SlackIdentity:
    try:
        response = client.users_info(user=user_id)
    except SlackApiError as exc:
        raise IdentityUnavailable(
            user_id, exc.response.get("error", "unknown_error")
        ) from None
    except (SlackClientError, OSError) as exc:
        raise IdentityUnavailable(user_id, str(exc) or type(exc).__name__) from None

    return identity_from_user(user_id, response.get("user") or {})


def identity_from_user(user_id: str, user: dict) -> SlackIdentity:
    """Build the identity from a ``users.info`` user object."""
    if user.get("is_bot") or user.get("deleted"):
        return SlackIdentity(user_id, "", "the Slack user is a bot or deactivated")

    raw_email = (user.get("profile") or {}).get("email") or ""
    try:
        email = normalize_email(raw_email)
    except ValueError:
        email = ""
    if not email:
        return SlackIdentity(
            user_id,
            "",
            "the Slack profile has no email address that this app may read",
        )
    # Slack sends is_email_confirmed only in some workspaces; when it is
    # present and false, the address was never verified.
    if user.get("is_email_confirmed") is False:
        return SlackIdentity(
            user_id, "", f"the Slack email address {email} is not confirmed yet"
        )
    return SlackIdentity(user_id, email)
