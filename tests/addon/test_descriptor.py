"""The deployment descriptor: its schema, its URLs and the committed file."""

from __future__ import annotations

import json
from pathlib import Path
from urllib.parse import urlparse

import pytest
from werkzeug.exceptions import MethodNotAllowed, NotFound

from addon.descriptor import EXAMPLE_BASE_URL, build_descriptor, render_descriptor
from tests.addon.conftest import BASE_URL, DEPLOYMENT, card_of, widgets_of
from tests.conftest import ASSIGNEE

ROOT = Path(__file__).resolve().parents[2]
REQUIRED_SCOPES = {
    "https://www.googleapis.com/auth/gmail.addons.execute",
    "https://www.googleapis.com/auth/gmail.addons.current.message.readonly",
    "https://www.googleapis.com/auth/userinfo.email",
    "openid",
}


def schema_errors(document: dict) -> list[str]:
    return [
        f"{'/'.join(map(str, error.absolute_path))}: {error.message}"
        for error in DEPLOYMENT.iter_errors(document)
    ]


def render(runner, tmp_path: Path, base_url: str) -> dict:
    output = tmp_path / "appsscript.json"
    result = runner.invoke(args=["addon-descriptor", base_url, "--output", str(output)])
    assert result.exit_code == 0, result.output
    return json.loads(output.read_text())


def trigger_urls(descriptor: dict) -> list[str]:
    add_ons = descriptor["addOns"]
    return [add_ons["common"]["homepageTrigger"]["runFunction"]] + [
        trigger["onTriggerFunction"]
        for trigger in add_ons["gmail"]["contextualTriggers"]
    ]


def test_rendered_descriptor_matches_schema(runner, tmp_path):
    descriptor = render(runner, tmp_path, "https://tasks.example.org/")

    assert schema_errors(descriptor) == []
    assert REQUIRED_SCOPES <= set(descriptor["oauthScopes"])
    assert descriptor["addOns"]["common"]["name"] == "threadtask"
    assert trigger_urls(descriptor) == [
        "https://tasks.example.org/addon/homepage",
        "https://tasks.example.org/addon/message",
    ]
    assert descriptor["addOns"]["gmail"]["contextualTriggers"][0]["unconditional"] == {}


def test_descriptor_urls_are_served(app, client, runner, tmp_path):
    descriptor = render(runner, tmp_path, "https://tasks.example.org")
    routes = app.url_map.bind("tasks.example.org", url_scheme="https")

    for url in trigger_urls(descriptor):
        endpoint, _ = routes.match(urlparse(url).path, method="POST")
        assert endpoint.startswith("addon."), url

    logo = urlparse(descriptor["addOns"]["common"]["logoUrl"]).path
    response = client.get(logo)
    assert response.status_code == 200
    assert response.mimetype == "image/png"
    assert response.data.startswith(b"\x89PNG")


def test_trigger_urls_reject_get(app, runner, tmp_path):
    descriptor = render(runner, tmp_path, "https://tasks.example.org")
    routes = app.url_map.bind("tasks.example.org", url_scheme="https")

    for url in trigger_urls(descriptor):
        with pytest.raises(MethodNotAllowed):
            routes.match(urlparse(url).path, method="GET")


def test_committed_descriptor_is_current(runner, tmp_path):
    committed = (ROOT / "appsscript.json").read_text()

    assert committed == render_descriptor(EXAMPLE_BASE_URL)
    assert schema_errors(json.loads(committed)) == []


def test_cli_prints_to_stdout(runner):
    result = runner.invoke(args=["addon-descriptor", "https://tasks.example.org"])

    assert result.exit_code == 0
    assert json.loads(result.stdout)["addOns"]["common"]["logoUrl"] == (
        "https://tasks.example.org/addon/static/logo.png"
    )


def test_cli_defaults_to_addon_base_url(runner):
    result = runner.invoke(args=["addon-descriptor"])

    assert result.exit_code == 0
    descriptor = json.loads(result.stdout)
    assert trigger_urls(descriptor)[0] == "https://threadtask.test/addon/homepage"


@pytest.mark.parametrize(
    "base_url", ["http://tasks.example.org", "tasks.example.org", "https://x.org/?a=1"]
)
def test_cli_rejects_non_https(runner, base_url):
    result = runner.invoke(args=["addon-descriptor", base_url])

    assert result.exit_code == 2
    assert "is not an HTTPS base URL" in result.output


def test_schema_rejects_apps_script_manifest():
    manifest = json.loads(render_descriptor(EXAMPLE_BASE_URL))
    manifest["timeZone"] = "Europe/Paris"
    manifest["addOns"]["common"]["homepageTrigger"]["runFunction"] = "onHomepage"

    errors = schema_errors(manifest)

    assert any("timeZone" in error for error in errors)
    assert any("runFunction" in error for error in errors)


def test_unknown_path_not_served(app):
    routes = app.url_map.bind("tasks.example.org", url_scheme="https")

    with pytest.raises(NotFound):
        routes.match("/addon/not-a-trigger", method="POST")


def test_card_links_match_allowed_prefixes(addon, open_task):
    prefixes = build_descriptor(BASE_URL)["addOns"]["common"]["openLinkUrlPrefixes"]
    card = card_of(addon.act("/addon/homepage", ASSIGNEE).get_json())

    links = [
        item["onClick"]["openLink"]["url"]
        for item in widgets_of(card, "decoratedText")
        if "openLink" in item.get("onClick", {})
    ]

    assert links
    for link in links:
        assert any(link.startswith(prefix) for prefix in prefixes), link
