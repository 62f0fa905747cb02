"""Hostile and malformed requests: each gets a 4xx that names the fault and
leaves the database as it was."""

import base64
import io
import json

import pytest

from core.models import Delivery, Event, Task
from tests.conftest import ASSIGNEE, STRANGER

HUGE = "9" * 25


def create(client, headers, **fields):
    body = {"thread_id": "thread-1", "subject": "VPN is down", **fields}
    response = client.post("/tasks", json=body, headers=headers)
    assert response.status_code == 201, response.get_json()
    return response.get_json()


def raw_json(client, headers, body: bytes):
    return client.post(
        "/tasks", data=body, headers={**headers, "Content-Type": "application/json"}
    )


@pytest.mark.parametrize(
    "url",
    [
        f"/tasks/{HUGE}",
        f"/tasks?q=id:{HUGE}",
        "/tasks?cursor="
        + base64.urlsafe_b64encode(json.dumps(["-id", int(HUGE), 1]).encode()).decode(),
    ],
    ids=["path", "query", "cursor"],
)
def test_huge_ids_are_not_500(client, as_creator, url):
    response = client.get(url, headers=as_creator)

    assert response.status_code in (400, 404)


@pytest.mark.parametrize(
    ("body", "words"),
    [
        (b'{"thread_id": "t", "subject": "\\ud800"}', ["subject", "surrogate"]),
        (b'{"thread_id": "t", "x": NaN}', ["not valid JSON", "NaN"]),
        (b'{"thread_id": "t", "x": Infinity}', ["not valid JSON", "Infinity"]),
        (b"[" * 100_000 + b"]" * 100_000, ["nested too deeply"]),
        (b"", ["empty"]),
        (b"null", ["JSON object, not null"]),
        (b"[]", ["JSON object, not an array"]),
    ],
    ids=["surrogate", "nan", "infinity", "deep", "empty", "null", "array"],
)
def test_hostile_json_is_400(client, as_creator, body, words):
    response = raw_json(client, as_creator, body)

    assert response.status_code == 400
    json.loads(response.get_data())  # the error body itself is strict JSON
    for word in words:
        assert word in response.get_json()["detail"]
    assert Task.select().count() == 0


def test_every_invalid_field_listed(client, as_creator):
    body = {
        "thread_id": "t" * 300,
        "subject": "s" * 2000,
        "assigned_to": "nobody",
        "latest_message_id": "m" * 1200,
    }

    response = client.post("/tasks", json=body, headers=as_creator)

    fields = {e["field"] for e in response.get_json()["errors"]}
    assert fields == {"thread_id", "subject", "assigned_to", "latest_message_id"}
    assert all(len(str(e["value"])) <= 203 for e in response.get_json()["errors"])


@pytest.mark.parametrize(
    "assigned_to", ["bob@example.com, eve@evil.test", "a@example.com b@example.com"]
)
def test_several_assignees_rejected(client, as_creator, assigned_to):
    response = client.post(
        "/tasks",
        json={"thread_id": "t", "assigned_to": assigned_to},
        headers=as_creator,
    )

    assert response.status_code == 400
    assert response.get_json()["errors"][0]["field"] == "assigned_to"


@pytest.mark.parametrize(
    ("method", "field", "words"),
    [
        ("post", "status", "always open"),
        ("put", "creator_email", "cannot change"),
        ("put", "version", "read-only"),
        ("put", "created_at", "read-only"),
        ("put", "colour", "not a field"),
    ],
)
def test_unsettable_fields_explained(client, as_creator, method, field, words):
    task = create(client, as_creator)
    url = "/tasks" if method == "post" else f"/tasks/{task['id']}"
    body = {"thread_id": "t2", field: "fixed"} if method == "post" else {field: "x"}

    response = getattr(client, method)(url, json=body, headers=as_creator)

    assert response.status_code == 400
    assert words in response.get_json()["errors"][0]["message"]


def test_multipart_duplicate_field(client, as_creator):
    data = {"thread_id": ["a", "b"]}

    response = client.post(
        "/tasks", data=data, headers=as_creator, content_type="multipart/form-data"
    )

    assert response.status_code == 400
    assert "more than once" in response.get_json()["detail"]


def test_multipart_two_files(client, as_creator):
    data = {
        "thread_id": "t",
        "html_file": [
            (io.BytesIO(b"<p>1</p>"), "a.html"),
            (io.BytesIO(b"<p>2</p>"), "b.html"),
        ],
    }

    response = client.post("/tasks", data=data, headers=as_creator)

    assert response.status_code == 400
    assert "one file" in response.get_json()["detail"]


def test_multipart_file_as_text(client, as_creator):
    response = client.post(
        "/tasks",
        data={"thread_id": "t", "html_file": "notafile"},
        headers=as_creator,
        content_type="multipart/form-data",
    )

    assert response.status_code == 400
    assert "file upload" in response.get_json()["detail"]


def test_multipart_without_boundary(client, as_creator):
    response = client.post(
        "/tasks",
        data=b"garbage",
        headers={**as_creator, "Content-Type": "multipart/form-data"},
    )

    assert response.status_code == 400
    assert "boundary" in response.get_json()["detail"]


def test_html_changes_recorded_by_size(client, as_creator):
    task = create(client, as_creator, html="<p>" + "x" * 10_000 + "</p>")

    client.put(
        f"/tasks/{task['id']}", json={"html": "<p>short</p>"}, headers=as_creator
    )

    event = Event.get(Event.field == "html")
    assert event.old_value == "10007 characters"
    assert event.new_value == "12 characters"


def test_reassignment_skips_old_notice(client, as_creator):
    task = create(client, as_creator, assigned_to=ASSIGNEE)

    client.put(
        f"/tasks/{task['id']}", json={"assigned_to": STRANGER}, headers=as_creator
    )
    client.put(f"/tasks/{task['id']}", json={"assigned_to": ""}, headers=as_creator)

    statuses = {d.recipient: d.status for d in Delivery.select()}
    assert statuses == {ASSIGNEE: "skipped", STRANGER: "skipped"}


@pytest.mark.parametrize(
    ("if_match", "status"),
    [
        ("garbage", 412),
        ('"99-1"', 412),
        ('W/"{id}-1"', 412),
        ('"{id}-7", "{id}-1"', 200),
        ("*", 200),
    ],
    ids=["garbage", "other-task", "weak", "list", "star"],
)
def test_if_match_forms(client, as_creator, if_match, status):
    task = create(client, as_creator)

    response = client.put(
        f"/tasks/{task['id']}",
        json={"subject": "changed"},
        headers={**as_creator, "If-Match": if_match.replace("{id}", str(task["id"]))},
    )

    assert response.status_code == status
    if status == 412:
        assert Task.get_by_id(task["id"]).subject == "VPN is down"


def test_delete_honours_if_match(client, as_creator, as_admin):
    task = create(client, as_creator)

    stale = client.delete(
        f"/tasks/{task['id']}", headers={**as_admin, "If-Match": f'"{task["id"]}-99"'}
    )

    assert stale.status_code == 412
    assert Task.select().count() == 1


def test_cursor_needs_same_sort(client, as_creator):
    create(client, as_creator)
    create(client, as_creator, thread_id="thread-2")
    cursor = client.get(
        "/tasks?limit=1&sort=-modified_at", headers=as_creator
    ).get_json()["next_cursor"]

    response = client.get(f"/tasks?limit=1&sort=id&cursor={cursor}", headers=as_creator)

    assert response.status_code == 400
    assert "sort=-modified_at" in response.get_json()["detail"]


@pytest.mark.parametrize(
    "payload", [["-id", "x", 1], ["-id", 5, "1"], ["-id", True, 1], "nope", ["-id", 1]]
)
def test_tampered_cursor(client, as_creator, payload):
    cursor = base64.urlsafe_b64encode(json.dumps(payload).encode()).decode()

    response = client.get(f"/tasks?cursor={cursor}", headers=as_creator)

    assert response.status_code == 400


@pytest.mark.parametrize("query", ["status=open&status=closed", "status=!!closed"])
def test_odd_parameters(client, as_creator, query):
    response = client.get(f"/tasks?{query}", headers=as_creator)

    assert response.status_code == 400
    assert response.get_json()["errors"][0]["field"] == "status"


def test_delete_has_no_content_type(client, as_creator, as_admin):
    task = create(client, as_creator)

    response = client.delete(f"/tasks/{task['id']}", headers=as_admin)

    assert "Content-Type" not in response.headers


def test_parallel_puts_all_succeed(app, as_creator, backend):
    """Writers from several threads wait for the SQLite lock instead of failing."""
    from concurrent.futures import ThreadPoolExecutor

    task = create(app.test_client(), as_creator)

    def put(index):
        client = app.test_client()
        body = {"criticality": ["low", "high"][index % 2], "subject": f"s{index}"}
        return client.put(
            f"/tasks/{task['id']}", json=body, headers=as_creator
        ).status_code

    with ThreadPoolExecutor(max_workers=8) as pool:
        statuses = list(pool.map(put, range(24)))

    assert statuses == [200] * 24
    assert Task.get_by_id(task["id"]).version == 25
