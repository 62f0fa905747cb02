"""``GET /addon/preview``: the sidebar card as an HTML page, for local use.

The page shows the card JSON the add-on would send to Gmail, and its buttons
run the same handlers as the Google endpoints, as the signed-in API user.

A browser cannot send an Authorization header on a plain page load, so the
preview requests the API token once through a sign-in form, stores it in an
HttpOnly, SameSite=Strict cookie limited to /addon/preview and redirects back.
The token travels in a POST body rather than the URL, so access logs never
record it. Requests with ``Authorization: Bearer`` work as well.
"""

from __future__ import annotations

import json
import logging
from typing import Any
from urllib.parse import urlparse

from flask import Blueprint, Response, redirect, render_template, request
from markupsafe import Markup

from addon.actions import HANDLERS, show_homepage, show_message
from addon.views import request_context
from core.api.auth import current_actor
from core.auth import (
    TOKEN_PREFIX,
    AuthenticationFailed,
    email_from_google_token,
    lookup_api_token,
)
from core.tasks import Actor

logger = logging.getLogger(__name__)

COOKIE_NAME = "threadtask_preview"
COOKIE_PATH = "/addon/preview"

blueprint = Blueprint("addon_preview", __name__, template_folder="templates")


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
    actor = _actor_for(token) if token else "Enter an API token."
    if isinstance(actor, str):
        return _unauthorized(actor, target)

    response = redirect(target)
    response.set_cookie(
        COOKIE_NAME,
        token,
        path=COOKIE_PATH,
        httponly=True,
        samesite="Strict",
        secure=request.is_secure,
    )
    return response


def _preview_actor() -> Actor | str:
    """Return the signed-in user, or the reason why there is none."""
    if request.headers.get("Authorization"):
        # Same check as the API, which raises a 401 problem document itself.
        return current_actor(channel="addon")
    token = request.cookies.get(COOKIE_NAME)
    if not token:
        return (
            "Sign in with an API token; create one with "
            "'flask --app wsgi create-token EMAIL'."
        )
    return _actor_for(token)


def _actor_for(token: str) -> Actor | str:
    try:
        if token.startswith(TOKEN_PREFIX):
            row = lookup_api_token(token)
            return Actor(email=row.email, channel="addon", is_service=row.is_service)
        return Actor(email=email_from_google_token(token), channel="addon")
    except AuthenticationFailed as exc:
        return str(exc)


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
        plain=_plain,
        action_value=_action_value,
    )


def _plain(text: str) -> str:
    # Card text is limited HTML that the card builders escaped. The page shows
    # it as plain text, so no markup from a task can reach the page.
    return Markup(text or "").striptags()


def _action_value(action: dict[str, Any]) -> str:
    return json.dumps(
        {"function": action["function"], "parameters": action.get("parameters", [])}
    )
