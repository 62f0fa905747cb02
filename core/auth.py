"""API tokens and Google ID tokens: who is calling the API."""

from __future__ import annotations

import functools
import hashlib
import logging
import os
import secrets
from collections.abc import Callable
from typing import Any

from google.auth import exceptions as google_exceptions
from google.auth.transport import requests as google_requests
from google.oauth2 import id_token

from core.config import MIN_SECRET_KEY_LENGTH, ConfigError, Settings, get_settings
from core.models import ApiToken
from core.sqlcache import cached_select
from core.timeutil import utcnow

logger = logging.getLogger(__name__)

TOKEN_PREFIX = "tt_"
SECRET_KEY_FILE = "secret-key"


class AuthenticationFailed(Exception):
    """The bearer credential is missing, unknown, revoked or invalid."""


def hash_token(token: str) -> str:
    # Tokens carry 256 random bits, so a plain SHA-256 digest is enough to
    # make a leaked table useless; a slow password hash would add nothing.
    return hashlib.sha256(token.encode()).hexdigest()


def create_token(email: str, *, service: bool = False) -> tuple[ApiToken, str]:
    """Store a new token for ``email`` and return the row and the secret."""
    secret = TOKEN_PREFIX + secrets.token_urlsafe(32)
    row = ApiToken.create(
        email=email,
        token_hash=hash_token(secret),
        prefix=secret[:10],
        is_service=service,
    )
    return row, secret


def revoke_token(token_id: int) -> bool:
    """Mark a token revoked; return False if no active token has that id."""
    updated = (
        ApiToken.update(revoked_at=utcnow())
        .where((ApiToken.id == token_id) & ApiToken.revoked_at.is_null())
        .execute()
    )
    return updated == 1


def lookup_api_token(secret: str) -> ApiToken:
    rows = cached_select(
        ApiToken,
        "token-by-hash",
        lambda: ApiToken.select().where(ApiToken.token_hash == ""),
        [hash_token(secret)],
    )
    row = next(iter(rows), None)
    if row is None:
        raise AuthenticationFailed("The API token is not valid.")
    if row.revoked_at is not None:
        raise AuthenticationFailed(
            f"The API token {row.prefix}... was revoked; ask an admin for a new one."
        )
    return row


# google-auth calls this to fetch Google's public certificates. Tests replace
# it with a function that serves a locally generated certificate.
GoogleRequest = Callable[..., Any]
_google_request: GoogleRequest | None = None


def set_google_request(request: GoogleRequest | None) -> None:
    global _google_request
    _google_request = request


def google_request() -> GoogleRequest:
    global _google_request
    if _google_request is None:
        _google_request = google_requests.Request()
    return _google_request


def verify_google_id_token(
    token: str, audience: str | list[str] | tuple[str, ...]
) -> dict[str, Any]:
    """Verify a Google-signed ID token and return its claims."""
    try:
        return id_token.verify_oauth2_token(
            token,
            google_request(),
            audience=list(audience) if isinstance(audience, tuple) else audience,
        )
    except (ValueError, google_exceptions.GoogleAuthError) as exc:
        raise AuthenticationFailed(f"The Google ID token is not valid: {exc}") from None


def email_from_google_token(token: str) -> str:
    """Return the verified email of a Google ID token sent to the API."""
    settings = get_settings()
    if not settings.google_client_ids:
        raise AuthenticationFailed(
            "The bearer token is not an API token, and Google sign-in is off "
            "(GOOGLE_CLIENT_IDS is empty)."
        )
    claims = verify_google_id_token(token, settings.google_client_ids)
    if not claims.get("email") or not claims.get("email_verified"):
        raise AuthenticationFailed("The Google ID token has no verified email.")
    if (
        settings.google_hosted_domain
        and claims.get("hd") != settings.google_hosted_domain
    ):
        raise AuthenticationFailed(
            f"The Google account is not in the hosted domain {settings.google_hosted_domain}."
        )
    return str(claims["email"]).lower()


@functools.lru_cache(maxsize=8)
def signing_key(settings: Settings) -> str:
    """Return SECRET_KEY, or the random key kept in DATA_DIR/secret-key.

    The file is made on first use, readable by its owner only. Processes on
    one machine share it through DATA_DIR; processes on several machines
    need SECRET_KEY set to one value.
    """
    if settings.secret_key:
        return settings.secret_key
    path = settings.data_dir / SECRET_KEY_FILE
    if not path.exists():
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        # Written under a name of its own, then linked into place: two
        # processes starting at once both write, one link wins, and neither
        # ever reads a half-written file.
        temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            with os.fdopen(descriptor, "w") as handle:
                handle.write(secrets.token_hex(32) + "\n")
            os.link(temporary, path)
        except FileExistsError:
            pass
        finally:
            temporary.unlink(missing_ok=True)
    try:
        key = path.read_text(encoding="ascii").strip()
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(
            f"the key in {path} cannot be read ({exc}); delete it to have a new "
            "one made, or set SECRET_KEY"
        ) from None
    if len(key) < MIN_SECRET_KEY_LENGTH:
        raise ConfigError(
            f"the key in {path} is invalid: {len(key)} characters, fewer than "
            f"{MIN_SECRET_KEY_LENGTH}; delete the file to have a new one made, "
            "or set SECRET_KEY"
        )
    return key
