"""The /tasks REST API through the Flask test client."""

import io

import pytest

from core import tasks as core_tasks
from core.api.tasks import HISTORY_LIMIT
from core.models import Event, Task
from tests.conftest import ASSIGNEE, CREATOR, STRANGER, actor

PROBLEM = "application/problem+json"


def create(client, headers, **fields):
    body = {"thread_id": "thread-1", "subject": "VPN is down", **fields}
    response = client.post("/tasks", json=body, headers=headers)
    assert response.status_code == 201, response.get_json()
    return response.get_json()


def assert_problem(response, status, *words):
    assert response.status_code == status
    assert response.mimetype == PROBLEM
    detail = response.get_json()["detail"]
    for word in words:
        assert word in detail
    return response.get_json()


def test_create_returns_task(client, as_creator):
    task = create(client, as_creator, assigned_to="Alex <alex@example.com>")

    assert task["creator_email"] == CREATOR
    assert task["assigned_to"] == ASSIGNEE
    assert task["status"] == "open"
    assert task["criticality"] == "medium"
    assert task["created_at"].endswith("Z")


def test_create_multipart_with_html_file(client, as_creator):
    data = {
        "thread_id": "t-upload",
        "subject": "Scanner",
        "html_file": (io.BytesIO(b"<p>It jams</p>"), "body.html", "text/html"),
    }
    response = client.post("/tasks", data=data, headers=as_creator)

    assert response.status_code == 201
    assert response.get_json()["html"] == "<p>It jams</p>"


def test_upload_over_limit_is_413(make_settings, backend):
    from core import auth
    from core.db import database, migrate_database
    from wsgi import create_app

    app = create_app(make_settings(max_upload_bytes=1024))
    with database.connection_context():
        migrate_database()
        _, secret = auth.create_token(CREATOR)
    data = {"thread_id": "big", "html_file": (io.BytesIO(b"x" * 5000), "big.html")}
    response = app.test_client().post(
        "/tasks", data=data, headers={"Authorization": f"Bearer {secret}"}
    )

    assert_problem(response, 413, "1024 bytes", "MAX_UPLOAD_BYTES")
    with database.connection_context():
        assert Task.select().count() == 0
        if backend == "postgres":
            database.execute_sql("TRUNCATE task, api_token RESTART IDENTITY CASCADE")


def test_duplicate_thread_is_409(client, as_creator):
    first = create(client, as_creator)

    response = client.post("/tasks", json={"thread_id": "thread-1"}, headers=as_creator)

    body = assert_problem(response, 409, "thread-1", str(first["id"]))
    assert body["existing_task_id"] == first["id"]


@pytest.mark.parametrize(
    ("body", "field", "value"),
    [
        ({"thread_id": "t", "criticality": "urgent"}, "criticality", "urgent"),
        ({"thread_id": "t", "colour": "red"}, "colour", "red"),
        ({"subject": "no thread"}, "thread_id", None),
        (
            {"thread_id": "t", "assigned_to": "bob at example"},
            "assigned_to",
            "bob at example",
        ),
        ({"thread_id": 5}, "thread_id", 5),
    ],
)
def test_invalid_fields_are_400(client, as_creator, body, field, value):
    response = client.post("/tasks", json=body, headers=as_creator)

    problem = assert_problem(response, 400, field)
    assert problem["errors"][0]["field"] == field
    assert problem["errors"][0]["value"] == value
    assert Task.select().count() == 0


def test_malformed_json_is_400(client, as_creator):
    response = client.post(
        "/tasks",
        data=b'{"thread_id": ',
        headers={**as_creator, "Content-Type": "application/json"},
    )

    assert_problem(response, 400, "not valid JSON")


def test_json_array_is_400(client, as_creator):
    response = client.post("/tasks", json=["thread_id"], headers=as_creator)

    assert_problem(response, 400, "JSON object")


def test_wrong_content_type_is_415(client, as_creator):
    response = client.post(
        "/tasks",
        data="thread_id=t",
        headers={**as_creator, "Content-Type": "text/plain"},
    )

    assert_problem(response, 415, "text/plain", "application/json")


def test_get_has_history_and_etag(client, as_creator, as_assignee):
    task = create(client, as_creator, assigned_to=ASSIGNEE)
    client.put(f"/tasks/{task['id']}", json={"status": "fixed"}, headers=as_assignee)

    response = client.get(f"/tasks/{task['id']}", headers=as_creator)

    body = response.get_json()
    assert response.headers["ETag"] == f'"{task["id"]}-2"'
    assert [e["field"] for e in body["events"]] == ["created", "status"]
    assert body["events"][1]["actor"] == ASSIGNEE
    assert body["reminders"][0]["kind"] == "assigned"


def test_get_missing_is_404(client, as_creator):
    assert_problem(client.get("/tasks/4242", headers=as_creator), 404, "4242")


def test_put_changes_only_sent_fields(client, as_creator, as_stranger):
    task = create(client, as_creator, html="<p>original</p>")

    response = client.put(
        f"/tasks/{task['id']}", json={"criticality": "critical"}, headers=as_stranger
    )

    body = response.get_json()
    assert body["criticality"] == "critical"
    assert body["html"] == "<p>original</p>"
    assert body["modified_at"] >= task["modified_at"]


def test_put_stale_etag_is_412(client, as_creator):
    task = create(client, as_creator)
    etag = client.get(f"/tasks/{task['id']}", headers=as_creator).headers["ETag"]
    client.put(f"/tasks/{task['id']}", json={"subject": "first"}, headers=as_creator)

    response = client.put(
        f"/tasks/{task['id']}",
        json={"subject": "second"},
        headers={**as_creator, "If-Match": etag},
    )

    assert_problem(response, 412, "Fetch it again")
    assert Task.get_by_id(task["id"]).subject == "first"


def test_put_current_etag_succeeds(client, as_creator):
    task = create(client, as_creator)
    etag = client.get(f"/tasks/{task['id']}", headers=as_creator).headers["ETag"]

    response = client.put(
        f"/tasks/{task['id']}",
        json={"subject": "new"},
        headers={**as_creator, "If-Match": etag},
    )

    assert response.status_code == 200


def test_close_by_non_creator_is_403(client, as_creator, as_assignee):
    task = create(client, as_creator)

    response = client.put(
        f"/tasks/{task['id']}", json={"status": "closed"}, headers=as_assignee
    )

    assert_problem(
        response, 403, f"Only {CREATOR}, who created this task, can close it."
    )
    assert Task.get_by_id(task["id"]).status == "open"


def test_close_by_creator(client, as_creator):
    task = create(client, as_creator)

    response = client.put(
        f"/tasks/{task['id']}", json={"status": "closed"}, headers=as_creator
    )

    assert response.get_json()["status"] == "closed"


def test_put_cannot_change_creator(client, as_creator):
    task = create(client, as_creator)

    response = client.put(
        f"/tasks/{task['id']}", json={"creator_email": STRANGER}, headers=as_creator
    )

    assert_problem(response, 400, "creator_email")


def test_put_thread_to_taken_id_is_409(client, as_creator):
    create(client, as_creator)
    other = create(client, as_creator, thread_id="thread-2")

    response = client.put(
        f"/tasks/{other['id']}", json={"thread_id": "thread-1"}, headers=as_creator
    )

    assert_problem(response, 409, "thread-1")


def test_delete_by_non_admin_is_403(client, as_creator):
    task = create(client, as_creator)

    assert_problem(
        client.delete(f"/tasks/{task['id']}", headers=as_creator), 403, "admin"
    )
    assert Task.select().count() == 1


def test_delete_by_admin_is_204(client, as_creator, as_admin):
    task = create(client, as_creator)

    response = client.delete(f"/tasks/{task['id']}", headers=as_admin)

    assert response.status_code == 204
    assert client.get(f"/tasks/{task['id']}", headers=as_admin).status_code == 404


def test_creator_for_others_needs_service(client, as_stranger, as_service):
    refused = client.post(
        "/tasks", json={"thread_id": "t", "creator_email": CREATOR}, headers=as_stranger
    )
    assert_problem(refused, 403, "service token")

    allowed = client.post(
        "/tasks", json={"thread_id": "t", "creator_email": CREATOR}, headers=as_service
    )
    assert allowed.get_json()["creator_email"] == CREATOR


ENDPOINTS = [
    ("get", "/tasks"),
    ("post", "/tasks"),
    ("get", "/tasks/1"),
    ("put", "/tasks/1"),
    ("delete", "/tasks/1"),
]


@pytest.mark.parametrize(("method", "url"), ENDPOINTS)
def test_every_endpoint_needs_token(client, method, url):
    response = getattr(client, method)(url, json={})

    assert_problem(response, 401, "Authorization: Bearer")
    assert response.headers["WWW-Authenticate"] == "Bearer"


@pytest.mark.parametrize("token", ["tt_mistyped", "Basic abc", "garbage"])
def test_bad_tokens_are_401(client, token):
    response = client.get("/tasks", headers={"Authorization": f"Bearer {token}"})

    assert response.status_code == 401


def test_revoked_token_is_401(client, runner, token_for):
    headers = token_for(STRANGER)
    from core.models import ApiToken

    token_id = ApiToken.select().where(ApiToken.email == STRANGER).get().id
    runner.invoke(args=["revoke-token", str(token_id)])

    assert_problem(client.get("/tasks", headers=headers), 401, "revoked")


def test_token_stored_hashed(token_for):
    headers = token_for(STRANGER)
    from core.models import ApiToken

    secret = headers["Authorization"].split()[1]
    stored = ApiToken.get(ApiToken.email == STRANGER)
    assert secret not in (stored.token_hash, stored.prefix)


def test_google_id_token_accepted(make_settings, app, client, google_signer):
    from core.config import use_settings

    use_settings(make_settings(google_client_ids=("client-1.apps",)))
    token = google_signer.sign("client-1.apps", "Dana@Example.com")

    response = client.post(
        "/tasks", json={"thread_id": "g"}, headers={"Authorization": f"Bearer {token}"}
    )

    assert response.status_code == 201
    assert response.get_json()["creator_email"] == "dana@example.com"
    assert google_signer.requests


@pytest.mark.parametrize(
    ("audience", "claims", "expires_in"),
    [
        ("other-client", {}, 600),
        ("client-1.apps", {"email_verified": False}, 600),
        ("client-1.apps", {}, -3600),
        ("client-1.apps", {"hd": "other.test"}, 600),
    ],
    ids=["wrong-audience", "unverified-email", "expired", "wrong-domain"],
)
def test_google_id_token_rejected(
    make_settings, app, client, google_signer, audience, claims, expires_in
):
    from core.config import use_settings

    use_settings(
        make_settings(
            google_client_ids=("client-1.apps",), google_hosted_domain="example.com"
        )
    )
    token = google_signer.sign(
        audience, "dana@example.com", expires_in=expires_in, **claims
    )

    response = client.get("/tasks", headers={"Authorization": f"Bearer {token}"})

    assert response.status_code == 401


def test_google_token_signed_by_other_key(make_settings, app, client, google_signer):
    from core.config import use_settings
    from tests.conftest import GoogleSigner

    use_settings(make_settings(google_client_ids=("client-1.apps",)))
    forged = GoogleSigner().sign("client-1.apps", "dana@example.com")

    response = client.get("/tasks", headers={"Authorization": f"Bearer {forged}"})

    assert response.status_code == 401


def test_openapi_describes_api(client):
    from openapi_spec_validator import validate

    document = client.get("/openapi.json").get_json()

    validate(document)
    assert {"/tasks", "/tasks/{task_id}"} <= set(document["paths"])
    assert set(document["paths"]["/tasks/{task_id}"]) == {"get", "put", "delete"}


def test_events_survive_failed_request(client, as_creator):
    task = create(client, as_creator)
    before = Event.select().count()

    client.put(
        f"/tasks/{task['id']}",
        json={"subject": "x", "status": "nope"},
        headers=as_creator,
    )

    assert Event.select().count() == before
    assert Task.get_by_id(task["id"]).subject == "VPN is down"


def test_history_shows_latest_entries(client, as_creator, db):
    task = create(client, as_creator)
    levels = ["low", "high"]
    for number in range(HISTORY_LIMIT + 5):
        core_tasks.update_task(
            actor(CREATOR), task["id"], {"criticality": levels[number % 2]}
        )

    events = client.get(f"/tasks/{task['id']}", headers=as_creator).get_json()["events"]

    assert len(events) == HISTORY_LIMIT
    ids = [event["id"] for event in events]
    assert ids == sorted(ids)
    last = Event.select().order_by(Event.id.desc()).get()
    assert ids[-1] == last.id
    assert all(event["field"] == "criticality" for event in events)
