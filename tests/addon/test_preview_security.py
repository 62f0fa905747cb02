"""The preview's cookie, sign-out, caching and cross-origin defences."""

from __future__ import annotations

import json
import stat

import pytest
from freezegun import freeze_time

from core.auth import revoke_token, signing_key
from core.config import ConfigError, use_settings
from core.models import ApiToken, Event, Task
from core.tasks import Actor, create_task
from tests.addon.conftest import STATUS_FUNCTION, post_action, sign_in
from tests.conftest import ASSIGNEE, CREATOR

EIGHT_HOURS = 8 * 60 * 60
POST_PATHS = [
    "/addon/preview/action",
    "/addon/preview/sign-in",
    "/addon/preview/sign-out",
]


def post_action_value(task) -> str:
    return json.dumps(
        {
            "function": STATUS_FUNCTION,
            "parameters": [
                {"key": "task_id", "value": str(task.id)},
                {"key": "status", "value": "fixed"},
            ],
        }
    )


def test_cookie_expires_after_eight_hours(client, token_for, open_task):
    response = sign_in(client, token_for, ASSIGNEE)

    cookie = response.headers["Set-Cookie"]
    assert f"Max-Age={EIGHT_HOURS}" in cookie
    assert "Expires=" in cookie
    assert "Secure" not in cookie


def test_cookie_secure_over_https(client, token_for, open_task):
    secret = token_for(ASSIGNEE)["Authorization"].split(" ", 1)[1]

    response = client.post(
        "/addon/preview/sign-in",
        data={"token": secret, "next": "/addon/preview"},
        base_url="https://localhost",
    )

    assert response.status_code == 302
    assert "Secure" in response.headers["Set-Cookie"]


def test_sign_out_clears_cookie(client, token_for, open_task):
    sign_in(client, token_for, ASSIGNEE)
    assert client.get("/addon/preview").status_code == 200

    response = client.post("/addon/preview/sign-out")

    assert response.status_code == 302
    assert response.headers["Location"] == "/addon/preview"
    cookie = response.headers["Set-Cookie"]
    assert cookie.startswith("threadtask_preview=;")
    assert "Max-Age=0" in cookie
    assert "Path=/addon/preview" in cookie
    assert client.get_cookie("threadtask_preview", path="/addon/preview") is None
    assert client.get("/addon/preview").status_code == 401


def test_page_offers_sign_out(client, token_for, open_task):
    sign_in(client, token_for, ASSIGNEE)

    page = client.get("/addon/preview").get_data(as_text=True)

    assert 'action="/addon/preview/sign-out"' in page


@pytest.mark.parametrize(
    "path", ["/addon/preview", "/addon/preview?thread_id=thread-1"]
)
def test_page_not_cached(client, token_for, open_task, path):
    signed_out = client.get(path)
    sign_in(client, token_for, ASSIGNEE)

    signed_in = client.get(path)

    assert signed_out.status_code == 401
    assert signed_out.headers["Cache-Control"] == "no-store"
    assert signed_in.status_code == 200
    assert signed_in.headers["Cache-Control"] == "no-store"


def test_posts_not_cached(client, token_for, open_task):
    signed_in = sign_in(client, token_for, CREATOR)
    action = post_action(client, STATUS_FUNCTION, open_task)
    signed_out = client.post("/addon/preview/sign-out")

    assert signed_in.headers["Cache-Control"] == "no-store"
    assert action.status_code == 200
    assert action.headers["Cache-Control"] == "no-store"
    assert signed_out.headers["Cache-Control"] == "no-store"


@pytest.mark.parametrize("path", POST_PATHS)
@pytest.mark.parametrize(
    "headers",
    [
        {"Origin": "https://evil.example"},
        {"Origin": "null"},
        {"Origin": "http://localhost:8001"},
        {"Sec-Fetch-Site": "cross-site"},
        {"Sec-Fetch-Site": "same-site"},
    ],
    ids=["other-host", "opaque", "other-port", "cross-site", "same-site"],
)
def test_cross_origin_post_rejected(client, token_for, open_task, path, headers):
    sign_in(client, token_for, CREATOR)
    secret = token_for(ASSIGNEE)["Authorization"].split(" ", 1)[1]

    response = client.post(
        path,
        data={
            "thread_id": "thread-1",
            "_action": post_action_value(open_task),
            "token": secret,
            "next": "/addon/preview",
        },
        headers=headers,
    )

    assert response.status_code == 403
    assert "Set-Cookie" not in response.headers
    assert response.headers["Cache-Control"] == "no-store"
    assert Task.get_by_id(open_task.id).status == "open"
    assert client.get("/addon/preview").status_code == 200


@pytest.mark.parametrize(
    "headers",
    [
        {"Origin": "http://localhost"},
        {"Sec-Fetch-Site": "same-origin"},
        {"Origin": "http://localhost", "Sec-Fetch-Site": "same-origin"},
        {},
    ],
    ids=["origin", "fetch-site", "both", "neither"],
)
def test_same_origin_post_accepted(client, token_for, open_task, headers):
    sign_in(client, token_for, CREATOR)

    response = post_action(client, STATUS_FUNCTION, open_task, headers=headers)

    assert response.status_code == 200
    assert Task.get_by_id(open_task.id).status == "fixed"


def test_origin_of_base_url_accepted(client, token_for, open_task):
    # Behind a proxy that ends TLS, the browser's origin is the public URL.
    sign_in(client, token_for, CREATOR)

    response = post_action(
        client,
        STATUS_FUNCTION,
        open_task,
        headers={"Origin": "https://threadtask.test"},
    )

    assert response.status_code == 200
    assert Task.get_by_id(open_task.id).status == "fixed"


def test_task_of_other_thread_rejected(client, token_for, open_task):
    other = create_task(
        Actor(CREATOR, "api"), {"thread_id": "thread-2", "subject": "Other"}
    )
    sign_in(client, token_for, CREATOR)

    response = post_action(client, STATUS_FUNCTION, open_task, thread_id="thread-2")

    page = response.get_data(as_text=True)
    assert response.status_code == 400
    assert f"Task {open_task.id} does not belong to thread" in page
    assert Task.get_by_id(open_task.id).status == "open"
    assert Task.get_by_id(other.id).status == "open"
    assert Event.select().where(Event.field == "status").count() == 0


def test_task_without_thread_rejected(client, token_for, open_task):
    sign_in(client, token_for, CREATOR)

    response = post_action(client, STATUS_FUNCTION, open_task, thread_id="")

    assert response.status_code == 400
    assert Task.get_by_id(open_task.id).status == "open"


def signed_in_cookie(client) -> str:
    cookie = client.get_cookie("threadtask_preview", path="/addon/preview")
    assert cookie is not None
    return cookie.value


def test_cookie_contains_no_token(client, token_for, open_task):
    secret = token_for(ASSIGNEE)["Authorization"].split(" ", 1)[1]

    client.post(
        "/addon/preview/sign-in", data={"token": secret, "next": "/addon/preview"}
    )

    value = signed_in_cookie(client)
    assert secret not in value
    assert secret[len("tt_") :] not in value


def test_altered_cookie_rejected(client, token_for, open_task):
    sign_in(client, token_for, ASSIGNEE)
    value = signed_in_cookie(client)
    payload, signature = value.rsplit(".", 1)
    forged = payload + "." + ("A" if signature[0] != "A" else "B") + signature[1:]
    client.set_cookie("threadtask_preview", forged, path="/addon/preview")

    response = client.get("/addon/preview")

    assert response.status_code == 401
    assert "not valid here" in response.get_data(as_text=True)


def test_old_cookie_rejected_by_server(client, token_for, open_task):
    with freeze_time("2026-03-02 09:00:00") as frozen:
        sign_in(client, token_for, ASSIGNEE)
        value = signed_in_cookie(client)
        frozen.tick(EIGHT_HOURS - 60)
        assert client.get("/addon/preview").status_code == 200

        # A copy of the cookie replayed after the browser dropped its own.
        frozen.tick(120)
        client.set_cookie("threadtask_preview", value, path="/addon/preview")
        response = client.get("/addon/preview")

    assert response.status_code == 401
    assert "more than 8 hours old" in response.get_data(as_text=True)


def test_revoked_token_ends_sign_in(client, token_for, open_task):
    sign_in(client, token_for, ASSIGNEE)
    [row] = ApiToken.select().where(ApiToken.email == ASSIGNEE)

    revoke_token(row.id)
    response = client.get("/addon/preview")

    assert response.status_code == 401
    assert "revoked" in response.get_data(as_text=True)


def test_cookie_from_other_key_rejected(
    app, client, token_for, open_task, make_settings
):
    sign_in(client, token_for, ASSIGNEE)
    use_settings(make_settings(secret_key="k" * 40))

    response = client.get("/addon/preview")

    assert response.status_code == 401


def test_key_file_made_once_and_private(make_settings, tmp_path):
    settings = make_settings(data_dir=tmp_path / "fresh")

    first = signing_key(settings)
    again = signing_key(make_settings(data_dir=tmp_path / "fresh"))

    path = tmp_path / "fresh" / "secret-key"
    assert first == again == path.read_text().strip()
    assert len(first) == 64
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert [p.name for p in path.parent.iterdir()] == ["secret-key"]


def test_set_secret_key_wins_over_file(make_settings):
    assert signing_key(make_settings(secret_key="s" * 32)) == "s" * 32


def test_short_key_file_rejected(make_settings, tmp_path):
    folder = tmp_path / "broken"
    folder.mkdir()
    (folder / "secret-key").write_text("\n")

    with pytest.raises(ConfigError, match="delete the file"):
        signing_key(make_settings(data_dir=folder))


def signed_cookie(claims) -> str:
    from addon.preview import _serializer

    return _serializer().dumps(claims)


def test_cookie_for_reused_id_rejected(client, token_for, open_task):
    sign_in(client, token_for, ASSIGNEE)
    [row] = ApiToken.select().where(ApiToken.email == ASSIGNEE)
    # Another database sharing SECRET_KEY gave this row id to someone else.
    forged = signed_cookie({"api_token_id": row.id, "token_hash": "0" * 64})
    client.set_cookie("threadtask_preview", forged, path="/addon/preview")

    assert client.get("/addon/preview").status_code == 401


@pytest.mark.parametrize(
    "claims",
    [
        {"api_token_id": {"a": 1}},
        {"api_token_id": 10**30},
        {"api_token_id": True, "token_hash": ""},
        [1, 2],
        "text",
    ],
)
def test_odd_claims_rejected(client, open_task, claims):
    client.set_cookie(
        "threadtask_preview", signed_cookie(claims), path="/addon/preview"
    )

    assert client.get("/addon/preview").status_code == 401


def test_small_clock_skew_accepted(client, token_for, open_task):
    with freeze_time("2026-03-02 09:00:03"):
        sign_in(client, token_for, ASSIGNEE)
    with freeze_time("2026-03-02 09:00:00"):
        assert client.get("/addon/preview").status_code == 200
    with freeze_time("2026-03-02 08:50:00"):
        response = client.get("/addon/preview")

    assert response.status_code == 401
    assert "in the future" in response.get_data(as_text=True)
