"""Gmail add-on: card endpoints that Google calls over HTTP, and their preview."""

from flask import Flask


def init_app(app: Flask) -> None:
    """Register the add-on routes, the preview and the descriptor command on ``app``."""
    from addon import descriptor, preview, views

    app.register_blueprint(views.blueprint)
    app.register_blueprint(preview.blueprint)
    app.cli.add_command(descriptor.addon_descriptor)
