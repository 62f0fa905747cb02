"""The HTTP deployment descriptor that `gcloud workspace-add-ons` deploys.

Google's Deployment resource has only ``oauthScopes`` and ``addOns``; every
trigger is an HTTPS URL of this app. Reference:
https://developers.google.com/workspace/add-ons/reference/rest/v1/projects.deployments
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import click
from flask import current_app
from flask.cli import with_appcontext

from addon import cards
from addon.verify import base_url as configured_base_url
from core.links import GMAIL_WEB_URL

ADDON_NAME = "threadtask"
LOGO_PATH = "/addon/static/logo.png"
EXAMPLE_BASE_URL = "https://threadtask.example.com"

OAUTH_SCOPES = [
    "https://www.googleapis.com/auth/gmail.addons.execute",
    "https://www.googleapis.com/auth/gmail.addons.current.message.readonly",
    "https://www.googleapis.com/auth/userinfo.email",
    "openid",
]


def build_descriptor(base_url: str) -> dict[str, Any]:
    """Return the deployment descriptor with every URL under ``base_url``."""
    base = base_url.rstrip("/")
    return {
        "oauthScopes": OAUTH_SCOPES,
        "addOns": {
            "common": {
                "name": ADDON_NAME,
                "logoUrl": base + LOGO_PATH,
                "homepageTrigger": {"runFunction": base + cards.HOMEPAGE_PATH},
                # Cards may open an HTTPS link only under one of these prefixes.
                "openLinkUrlPrefixes": [GMAIL_WEB_URL],
            },
            "gmail": {
                "contextualTriggers": [
                    {
                        "unconditional": {},
                        "onTriggerFunction": base + cards.MESSAGE_PATH,
                    }
                ]
            },
            "httpOptions": {
                # Google sends the add-on service account's ID token as the
                # Bearer header, which verify_addon_request checks.
                "authorizationHeader": "SYSTEM_ID_TOKEN",
                "granularOauthPermissionSupport": "OPT_IN",
            },
        },
    }


def render_descriptor(base_url: str) -> str:
    return json.dumps(build_descriptor(base_url), indent=2) + "\n"


@click.command("addon-descriptor")
@click.argument("base_url", required=False)
@click.option(
    "--output",
    "-o",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Write the descriptor to this file instead of standard output.",
)
@with_appcontext
def addon_descriptor(base_url: str | None, output: Path | None) -> None:
    """Print the add-on's deployment descriptor (appsscript.json) for BASE_URL.

    BASE_URL is the public HTTPS address of this app, such as
    https://threadtask.example.com; it defaults to ADDON_BASE_URL.
    """
    base = (base_url or configured_base_url(current_app.config["SETTINGS"])).rstrip("/")
    parsed = urlparse(base)
    if parsed.scheme != "https" or not parsed.netloc or parsed.query or parsed.fragment:
        raise click.BadParameter(
            f"{base!r} is not an HTTPS base URL; Google calls add-on endpoints over "
            "HTTPS only, so pass one such as https://threadtask.example.com",
            param_hint="BASE_URL",
        )
    text = render_descriptor(base)
    if output is None:
        click.echo(text, nl=False)
        return
    output.write_text(text, encoding="utf-8")
    click.echo(f"Wrote {output} for {base}.", err=True)
