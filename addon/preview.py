"""``GET /addon/preview``: the sidebar card as an HTML page, for local use.

The page shows the card JSON the add-on would send to Gmail, and its buttons
run the same handlers as the Google endpoints, as the signed-in API user.

A browser cannot send an Authorization header on a plain page load, so the
preview requests the API token once through a sign-in form and redirects
back. The token travels in a POST body rather than the URL, so access logs
never record it. The cookie the browser keeps contains no token: it names the
token's row (or a Google account's email) and is signed with the app's key
and timestamped, so the server rejects it when it was altered, after eight
hours, or once the token is revoked. HttpOnly and SameSite=Strict keep it
from scripts and other sites; it is limited to /addon/preview. Requests with
``Authorization: Bearer`` work as well.

The posts of the page (sign-in, sign-out, button actions) are accepted only
from the page's own origin, so another site cannot sign a browser in with its
own token or press a button for the user.
"""

from __future__ import annotations

import hmac
import json
import logging
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlparse

from flask import Blueprint, Response, current_app, redirect, render_template, request
from itsdangerous import BadSignature, URLSafeTimedSerializer
from markupsafe import Markup

from addon.actions import HANDLERS, is_whole_number, show_homepage, show_message
from addon.verify import base_url
from addon.views import request_context
from core.api.auth import _touch, current_actor
from core.auth import (
    TOKEN_PREFIX,
    AuthenticationFailed,
    email_from_google_token,
    lookup_api_token,
    signing_key,
)
from core.config import get_settings
from core.models import ApiToken, Task
from core.tasks import Actor

logger = logging.getLogger(__name__)

COOKIE_NAME = "threadtask_preview"
COOKIE_PATH = "/addon/preview"
# A sign-in lasts a working day; the server checks the age the cookie was
# signed with, so a copied cookie stops working too.
COOKIE_MAX_AGE = timedelta(hours=8)
# Keeps these signatures apart from any other value signed with the same key.
COOKIE_SALT = "threadtask.addon-preview.sign-in"
# Web processes on several machines sign with one key but their own clocks.
CLOCK_SKEW = timedelta(minutes=5)
MAX_ROW_ID = 2**63 - 1

# Sec-Fetch-Site values of a request that the page itself, or the user typing
# the address, started.
OWN_FETCH_SITES = {"same-origin", "none"}

blueprint = Blueprint("addon_preview", __name__, template_folder="templates")


@blueprint.after_request
def _no_store(response: Response) -> Response:
    # Pages show task data for the signed-in user, so no cache may keep them.
    response.headers["Cache-Control"] = "no-store"
    return response


@blueprint.before_request
def _reject_cross_origin() -> tuple[str, int] | None:
    if request.method != "POST" or _same_origin():
        return None

    logger.warning(
        "cross-origin post to %s rejected: Origin %r, Sec-Fetch-Site %r",
        request.path,
        request.headers.get("Origin"),
        request.headers.get("Sec-Fetch-Site"),
    )
    page = render_template(
        "addon/preview.html",
        error="The form was posted from another site, so it was rejected. "
        "Open the preview page and use its own form.",
    )
    return page, 403


@blueprint.get("/addon/preview")
def preview() -> Response | str | tuple[str, int]:
    """Render the card for ``thread_id``, or the homepage card without one."""
    actor = _preview_actor()
    if isinstance(actor, str):
        return _unauthorized(actor)
    thread_id = request.args.get("thread_id", "")
    context = request_context()
    if thread_id:
        response = show_message(actor, {"gmail": {"threadId": thread_id}}, context)
    else:
        response = show_homepage(actor, {}, context)
    return _render(response, thread_id)


@blueprint.post("/addon/preview/action")
def run_action() -> str | tuple[str, int]:
    """Run the action of a clicked button, as Google would, and show the result."""
    actor = _preview_actor()
    if isinstance(actor, str):
        return _unauthorized(actor)
    thread_id = request.form.get("thread_id", "")
    try:
        action = json.loads(request.form.get("_action", ""))
        handler = HANDLERS[urlparse(action["function"]).path]
        parameters = {
            item["key"]: item["value"] for item in action.get("parameters", [])
        }
    except (ValueError, KeyError, TypeError) as exc:
        logger.warning("preview action from %s rejected: %r", actor.email, exc)
        return render_template(
            "addon/preview.html", error="The button sent no valid action."
        ), 400

    mismatch = _thread_mismatch(parameters.get("task_id"), thread_id)
    if mismatch:
        logger.warning("preview action from %s rejected: %s", actor.email, mismatch)
        return render_template("addon/preview.html", error=mismatch), 400

    form_inputs = {
        name: {"stringInputs": {"value": [value]}}
        for name, value in request.form.items()
        if not name.startswith("_") and name != "thread_id"
    }
    event = {
        "commonEventObject": {"parameters": parameters, "formInputs": form_inputs},
        "gmail": {"threadId": thread_id},
    }
    return _render(handler(actor, event, request_context()), thread_id)


@blueprint.post("/addon/preview/sign-in")
def sign_in() -> Response | tuple[str, int]:
    """Check the API token from the sign-in form and keep it in a cookie."""
    token = request.form.get("token", "").strip()
    target = request.form.get("next", "")
    # Only preview pages are valid targets, so the form cannot redirect elsewhere.
    if urlparse(target).path != COOKIE_PATH or urlparse(target).netloc:
        target = COOKIE_PATH
    claims = _sign_in_claims(token) if token else "Enter an API token."
    if isinstance(claims, str):
        return _unauthorized(claims, target)

    response = redirect(target)
    response.set_cookie(
        COOKIE_NAME,
        _serializer().dumps(claims),
        max_age=COOKIE_MAX_AGE,
        path=COOKIE_PATH,
        httponly=True,
        samesite="Strict",
        secure=request.is_secure,
    )
    return response


@blueprint.post("/addon/preview/sign-out")
def sign_out() -> Response:
    """Delete the token cookie and go back to the sign-in form."""
    response = redirect(COOKIE_PATH)
    response.delete_cookie(
        COOKIE_NAME,
        path=COOKIE_PATH,
        httponly=True,
        samesite="Strict",
        secure=request.is_secure,
    )
    return response


def _same_origin() -> bool:
    """Check whether a post comes from this site, by Origin or Sec-Fetch-Site.

    A post with neither header is accepted, so curl and the test client work.
    A browser that sends neither is still covered by the SameSite=Strict
    cookie, which keeps a cross-site post from acting as the user, but
    another site could sign such a browser in with its own token.
    """
    origin = request.headers.get("Origin")
    if origin is not None:
        own = {_origin_of(request.host_url), _origin_of(_public_url())}
        return origin.rstrip("/") in own
    fetch_site = request.headers.get("Sec-Fetch-Site")
    return fetch_site is None or fetch_site in OWN_FETCH_SITES


def _public_url() -> str:
    # Behind a proxy that ends TLS, the browser's origin is the public URL
    # while the request reaches Flask over plain HTTP.
    return base_url(current_app.config["SETTINGS"])


def _origin_of(url: str) -> str:
    parsed = urlparse(url)
    return f"{parsed.scheme}://{parsed.netloc}"


def _thread_mismatch(raw_task_id: object, thread_id: str) -> str:
    """Return why a button's task does not belong to the page's thread, or ""."""
    if not isinstance(raw_task_id, str) or not is_whole_number(raw_task_id):
        # No task, or an id the handler rejects with its own message.
        return ""
    task = Task.get_or_none(Task.id == int(raw_task_id))
    if task is None or task.thread_id == thread_id:
        return ""

    return (
        f"Task {task.id} does not belong to thread {thread_id!r}, so nothing "
        "was changed. Open the preview of the task's own thread."
    )


def _preview_actor() -> Actor | str:
    """Return the signed-in user, or the reason why there is none."""
    if request.headers.get("Authorization"):
        # Same check as the API, which raises a 401 problem document itself.
        return current_actor(channel="addon")
    cookie = request.cookies.get(COOKIE_NAME)
    if not cookie:
        return (
            "Sign in with an API token; create one with "
            "'flask --app wsgi create-token EMAIL'."
        )
    try:
        claims, signed_at = _serializer().loads(cookie, return_timestamp=True)
    except BadSignature:
        # Altered, or signed with another key (SECRET_KEY changed).
        return "Your sign-in is not valid here; sign in again."
    age = datetime.now(UTC) - signed_at
    if age > COOKIE_MAX_AGE:
        return "Your sign-in is more than 8 hours old; sign in again."
    if age < -CLOCK_SKEW:
        return "Your sign-in is dated in the future; sign in again."
    return _actor_for_claims(claims)


def _serializer() -> URLSafeTimedSerializer:
    return URLSafeTimedSerializer(signing_key(get_settings()), salt=COOKIE_SALT)


def _sign_in_claims(token: str) -> dict[str, Any] | str:
    """Check a token from the sign-in form; return what the cookie records."""
    try:
        if token.startswith(TOKEN_PREFIX):
            row = lookup_api_token(token)
            _touch(row)
            # The digest binds the cookie to this token, not merely to a row
            # id that another database sharing the key may give someone else.
            return {"api_token_id": row.id, "token_hash": row.token_hash}
        return {"google_email": email_from_google_token(token)}
    except AuthenticationFailed as exc:
        return str(exc)


def _actor_for_claims(claims: Any) -> Actor | str:
    """Return the user a verified cookie names, if the token still works."""
    if not isinstance(claims, dict):
        return "Your sign-in is not valid here; sign in again."
    if isinstance(claims.get("google_email"), str):
        return Actor(email=claims["google_email"], channel="addon")
    token_id = claims.get("api_token_id")
    row = None
    if type(token_id) is int and 0 < token_id <= MAX_ROW_ID:
        row = ApiToken.get_or_none(ApiToken.id == token_id)
    if row is None or not hmac.compare_digest(
        row.token_hash, str(claims.get("token_hash", ""))
    ):
        return "Your sign-in names no known API token; sign in again."
    if row.revoked_at is not None:
        return f"The API token {row.prefix}... was revoked; sign in with another."
    # Record the use as the API does for a Bearer header.
    _touch(row)
    return Actor(email=row.email, channel="addon", is_service=row.is_service)


def _unauthorized(reason: str, target: str | None = None) -> tuple[str, int]:
    if target is None:
        target = (
            request.full_path.rstrip("?") if request.method == "GET" else COOKIE_PATH
        )
    page = render_template(
        "addon/preview.html", error=reason, sign_in=True, target=target
    )
    return page, 401


def _render(response: dict[str, Any], thread_id: str) -> str:
    action = response.get("renderActions", response).get("action", {})
    navigation = action.get("navigations", [{}])[0]
    card = navigation.get("updateCard") or navigation.get("pushCard") or {}
    notification = action.get("notification", {}).get("text", "")
    return render_template(
        "addon/preview.html",
        card=card,
        notification=notification,
        thread_id=thread_id,
        card_json=json.dumps(response, indent=2, ensure_ascii=False),
        formatted=_formatted_as_plain,
        action_value=_action_value,
    )


def _formatted_as_plain(text: str) -> str:
    # The formatted fields of a card hold limited HTML that the card builders
    # escaped. The page strips the tags and shows the rest as plain text, so
    # no markup from a task can reach the page. Plain fields need no call.
    return Markup(text or "").striptags()


def _action_value(action: dict[str, Any]) -> str:
    return json.dumps(
        {"function": action["function"], "parameters": action.get("parameters", [])}
    )
