"""The endpoints Google's add-on service calls with a signed ID token."""

from __future__ import annotations

import logging
from collections.abc import Callable

from flask import Blueprint, Response, current_app, jsonify, request

from addon.actions import HANDLERS, Context, Handler
from addon.gmail import build_gmail_service
from addon.verify import AddonNotConfigured, base_url, verify_addon_request
from core.api.problems import problem
from core.auth import AuthenticationFailed
from core.tasks import Actor

logger = logging.getLogger(__name__)

blueprint = Blueprint(
    "addon", __name__, static_folder="static", static_url_path="/addon/static"
)


def request_context() -> Context:
    settings = current_app.config["SETTINGS"]
    return Context(
        base_url=base_url(settings),
        build_gmail=current_app.config.get("ADDON_GMAIL_SERVICE", build_gmail_service),
    )


def _endpoint(handler: Handler) -> Callable[[], Response]:
    """Wrap a handler in a view that verifies Google's tokens first."""

    def view() -> Response:
        settings = current_app.config["SETTINGS"]
        try:
            email = verify_addon_request(request, settings)
        except AuthenticationFailed as exc:
            logger.warning("add-on request to %s rejected: %s", request.path, exc)
            response = problem(401, "Unauthorized", str(exc))
            response.headers["WWW-Authenticate"] = "Bearer"
            return response
        except AddonNotConfigured as exc:
            logger.error("%s", exc)
            return problem(503, "Service unavailable", str(exc))

        event = request.get_json(silent=True)
        actor = Actor(email=email, channel="addon")
        return jsonify(handler(actor, event, request_context()))

    view.__name__ = handler.__name__
    return view


for _path, _handler in HANDLERS.items():
    blueprint.add_url_rule(_path, view_func=_endpoint(_handler), methods=["POST"])
