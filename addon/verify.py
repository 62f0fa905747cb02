"""Check that a request comes from Google's add-on service and who the user is.

Google sends each HTTP add-on request with an ID token of the add-on's service
account as the Bearer header, and the user's own ID token in the body at
``authorizationEventObject.userIdToken``. Both are verified; nothing unsigned
in the body decides who is acting.
"""

from __future__ import annotations

import logging
from typing import Any

from flask import Request

from core.auth import AuthenticationFailed, verify_google_id_token
from core.config import Settings

logger = logging.getLogger(__name__)


class AddonNotConfigured(Exception):
    """A setting that the add-on endpoints need is empty."""


def base_url(settings: Settings) -> str:
    """Return the public base URL of the add-on endpoints, without a trailing slash."""
    return (settings.addon_base_url or settings.public_base_url).rstrip("/")


def endpoint_url(settings: Settings, path: str) -> str:
    return base_url(settings) + path


def check_configured(settings: Settings) -> None:
    missing = [
        name
        for name, value in (
            ("ADDON_SERVICE_ACCOUNT", settings.addon_service_account),
            ("ADDON_OAUTH_CLIENT_ID", settings.addon_oauth_client_id),
        )
        if not value
    ]
    if missing:
        raise AddonNotConfigured(
            f"The Gmail add-on is not configured: set {' and '.join(missing)} to the "
            "values that `gcloud workspace-add-ons get-authorization` prints."
        )


def verify_addon_request(request: Request, settings: Settings) -> str:
    """Verify both ID tokens of an add-on request and return the user's email.

    Raises AuthenticationFailed for a missing or invalid token, and
    AddonNotConfigured when the service account or client id is not set.
    """
    check_configured(settings)
    system_claims = verify_google_id_token(
        _bearer(request), endpoint_url(settings, request.path)
    )
    _check_service_account(system_claims, settings.addon_service_account)

    event = request.get_json(silent=True)
    user_token = _user_id_token(event)
    # NOTE: Google's add-on docs do not state the audience of the user ID
    # token, so the add-on's OAuth client id (`oauthClientId`) is assumed.
    # A mismatch is logged with the token's `aud`, so check the first live
    # requests and correct ADDON_OAUTH_CLIENT_ID if they are rejected.
    user_claims = verify_google_id_token(user_token, settings.addon_oauth_client_id)
    email = str(user_claims.get("email") or "").lower()
    # NOTE: with granular consent a user may withhold userinfo.email. Such a
    # request is rejected with 401, and no card asks the user for the scope.
    if not email or user_claims.get("email_verified") is not True:
        raise AuthenticationFailed("The user ID token has no verified email.")
    return email


def _bearer(request: Request) -> str:
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise AuthenticationFailed(
            "The request has no Bearer ID token in its Authorization header."
        )
    return token.strip()


def _check_service_account(claims: dict[str, Any], expected: str) -> None:
    email = str(claims.get("email") or "").lower()
    if email != expected.lower() or claims.get("email_verified") is not True:
        logger.warning(
            "add-on request signed for %s, not the add-on service account", email
        )
        raise AuthenticationFailed(
            f"The ID token belongs to {email or 'no email'}, not to the add-on's "
            "service account (ADDON_SERVICE_ACCOUNT)."
        )


def _user_id_token(event: Any) -> str:
    authorization = (
        event.get("authorizationEventObject") if isinstance(event, dict) else None
    )
    token = (
        authorization.get("userIdToken") if isinstance(authorization, dict) else None
    )
    if not isinstance(token, str) or not token:
        raise AuthenticationFailed(
            "The event has no authorizationEventObject.userIdToken to name the user."
        )
    return token
