"""The Slack app manifest matches what the app expects."""

from __future__ import annotations

import json
from pathlib import Path

from bot import EVENTS_PATH
from bot.commands import FORMS
from core.config import Settings

MANIFEST = Path(__file__).parents[2] / "slack-manifest.json"


def load_manifest() -> dict:
    return json.loads(MANIFEST.read_text())


def test_manifest_declares_command():
    (command,) = load_manifest()["features"]["slash_commands"]

    assert command["command"] == Settings.model_fields["slack_command"].default
    assert command["url"].startswith("https://")
    assert command["url"].endswith(EVENTS_PATH)
    # Mentions arrive as <@U123|name>, which is how assign resolves people.
    assert command["should_escape"] is True
    for name in FORMS:
        assert name in command["usage_hint"]


def test_manifest_requests_needed_scopes():
    scopes = load_manifest()["oauth_config"]["scopes"]["bot"]

    assert sorted(scopes) == sorted(
        ["commands", "users:read", "users:read.email", "chat:write", "im:write"]
    )


def test_manifest_uses_http_requests():
    settings = load_manifest()["settings"]

    assert settings["socket_mode_enabled"] is False
    assert "bot_user" in load_manifest()["features"]
