"""``GET /openapi.json``, generated from the routes' docstrings and schemas."""

from __future__ import annotations

from apispec import APISpec
from apispec.ext.marshmallow import MarshmallowPlugin
from apispec_webframeworks.flask import FlaskPlugin
from flask import Blueprint, Flask, current_app, jsonify
from flask.typing import ResponseReturnValue

from core.api.schemas import ProblemSchema

bp = Blueprint("openapi", __name__)

API_VERSION = "1.0.0"


def init_app(app: Flask) -> None:
    app.register_blueprint(bp)


def build_spec(app: Flask) -> APISpec:
    """Describe every API route registered on ``app``."""
    settings = app.config["SETTINGS"]
    spec = APISpec(
        title="threadtask",
        version=API_VERSION,
        openapi_version="3.0.3",
        info={"description": "Tasks made from email threads, with reminders."},
        servers=[{"url": settings.public_base_url}],
        plugins=[FlaskPlugin(), MarshmallowPlugin()],
    )
    spec.components.security_scheme(
        "bearer",
        {
            "type": "http",
            "scheme": "bearer",
            "description": "An API token from create-token, or a Google ID token.",
        },
    )
    spec.components.schema("Problem", schema=ProblemSchema)
    spec.components.response(
        "Problem",
        {
            "description": "An RFC 9457 problem document.",
            "content": {"application/problem+json": {"schema": "Problem"}},
        },
    )
    with app.test_request_context():
        for rule in app.url_map.iter_rules():
            view = app.view_functions[rule.endpoint]
            if view.__doc__ and "---" in view.__doc__:
                spec.path(view=view, app=app)
    return spec


@bp.get("/openapi.json")
def openapi_json() -> ResponseReturnValue:
    """Serve the OpenAPI 3 document of this API."""
    cached = current_app.extensions.get("threadtask_openapi")
    if cached is None:
        cached = build_spec(current_app).to_dict()
        current_app.extensions["threadtask_openapi"] = cached
    return jsonify(cached)
