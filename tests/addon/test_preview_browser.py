"""The preview page in a real headless Chromium, against a real WSGI server.

Chromium is Debian's package at /usr/bin/chromium; Playwright drives it and
never downloads a browser. Without it the test is skipped, except under
CI=true, where a missing browser is a failure.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, expect, sync_playwright
from werkzeug.serving import make_server

from core.models import Event, Task
from tests.conftest import ASSIGNEE, STRANGER

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]

pytestmark = pytest.mark.skipif(
    not CHROMIUM.exists() and os.environ.get("CI") != "true",
    reason="Debian's chromium is not installed at /usr/bin/chromium",
)


@pytest.fixture
def live_server(app) -> Iterator[str]:
    """Serve the app on a free port of 127.0.0.1 in a background thread."""
    # A thread per request, as in production: the pool opens SQLite
    # connections with check_same_thread=False, so any thread may use them.
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()
    thread.join(timeout=10)


@pytest.fixture
def browser() -> Iterator[Browser]:
    if not CHROMIUM.exists():
        pytest.fail(f"CI needs Chromium at {CHROMIUM}: apt-get install -y chromium")
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(
            executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS
        )
        yield chromium
        chromium.close()


def test_mark_fixed_in_browser(browser, live_server, token_for, open_task):
    secret = token_for(ASSIGNEE)["Authorization"].split(" ", 1)[1]
    context = browser.new_context()
    page = context.new_page()
    page.set_default_timeout(15_000)

    page.goto(f"{live_server}/addon/preview?thread_id=thread-1")
    page.get_by_label("API token").fill(secret)
    page.get_by_role("button", name="Sign in").click()

    expect(page).to_have_url(f"{live_server}/addon/preview?thread_id=thread-1")
    assert page.url == f"{live_server}/addon/preview?thread_id=thread-1"
    [cookie] = context.cookies()
    assert cookie["httpOnly"] is True
    expect(page.get_by_text(f"Task {open_task.id} · open", exact=True)).to_be_visible()

    page.get_by_role("button", name="Mark fixed").click()

    expect(page.get_by_role("status")).to_have_text(
        f"Task {open_task.id} is marked fixed."
    )
    expect(page.get_by_text(f"Task {open_task.id} · fixed", exact=True)).to_be_visible()
    expect(page.get_by_role("button", name="Reopen")).to_be_visible()
    assert Task.get_by_id(open_task.id).status == "fixed"
    event = Event.select().where(Event.field == "status").get()
    assert (event.actor, event.channel, event.new_value) == (ASSIGNEE, "addon", "fixed")

    page.get_by_label("Criticality").select_option("critical")

    expect(page.get_by_role("status")).to_have_text(
        f"Task {open_task.id} is now critical."
    )
    assert Task.get_by_id(open_task.id).criticality == "critical"

    # Enter in the text field must not press the card's first button (Reopen).
    page.get_by_label("Assignee").fill(STRANGER)
    page.get_by_label("Assignee").press("Enter")
    page.get_by_role("button", name="Assign").click()

    expect(page.get_by_role("status")).to_have_text(
        f"Task {open_task.id} is assigned to {STRANGER}."
    )
    assert Task.get_by_id(open_task.id).assigned_to == STRANGER
    assert Task.get_by_id(open_task.id).status == "fixed"

    # Chromium sends Origin with the post, so this also passes the origin check.
    page.get_by_role("button", name="Sign out").click()

    expect(page.get_by_label("API token")).to_be_visible()
    assert context.cookies() == []
    context.close()
