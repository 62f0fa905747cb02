"""GET /tasks: filters, the q language, pagination and query counts."""

import pytest

from core import tasks
from core.db import database
from tests.conftest import ASSIGNEE, CREATOR, STRANGER, actor


@pytest.fixture
def sample(db):
    rows = [
        ("t1", "open", "low", ASSIGNEE),
        ("t2", "open", "critical", ASSIGNEE),
        ("t3", "fixed", "medium", STRANGER),
        ("t4", "closed", "high", ASSIGNEE),
        ("t5", "fixed", "low", ""),
    ]
    created = {}
    for thread, status, criticality, assignee in rows:
        task = tasks.create_task(
            actor(),
            {
                "thread_id": thread,
                "subject": f"Subject {thread}",
                "criticality": criticality,
                "assigned_to": assignee,
            },
        )
        if status != "open":
            tasks.update_task(actor(), task.id, {"status": status})
        created[thread] = task.id
    return created


def threads(response):
    assert response.status_code == 200, response.get_json()
    return sorted(t["thread_id"] for t in response.get_json()["tasks"])


def test_list_fields(client, as_creator, sample):
    item = client.get("/tasks?thread_id=t1", headers=as_creator).get_json()["tasks"][0]

    assert set(item) >= {
        "id",
        "subject",
        "creator_email",
        "assigned_to",
        "last_reminder_at",
        "criticality",
        "status",
        "thread_id",
        "latest_message_id",
        "modified_at",
    }
    assert "html" not in item


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("status=open,fixed", ["t1", "t2", "t3", "t5"]),
        ("status=!closed", ["t1", "t2", "t3", "t5"]),
        ("status=!open,fixed", ["t4"]),
        ("criticality=low&status=fixed", ["t5"]),
        (f"assigned_to={ASSIGNEE}&status=open", ["t1", "t2"]),
        ("assigned_to=me", []),
        (f"creator_email={CREATOR}&criticality=high", ["t4"]),
    ],
)
def test_filter_parameters(client, as_creator, sample, query, expected):
    assert threads(client.get(f"/tasks?{query}", headers=as_creator)) == expected


@pytest.mark.parametrize(
    ("q", "expected"),
    [
        ("(status:open OR status:fixed) AND NOT criticality:low", ["t2", "t3"]),
        ("status:open,fixed criticality:low", ["t1", "t5"]),
        ('NOT (status:closed OR assigned_to:"")', ["t1", "t2", "t3"]),
        ("subject:t4", ["t4"]),
        ("assigned_to:me", ["t1", "t2", "t4"]),
        ("status:open or status:fixed and criticality:low", ["t1", "t2", "t5"]),
    ],
)
def test_q_expressions(client, as_assignee, sample, q, expected):
    assert (
        threads(client.get("/tasks", query_string={"q": q}, headers=as_assignee))
        == expected
    )


@pytest.mark.parametrize(
    ("q", "position"),
    [
        ("(status:open", 12),
        ("status:open)", 11),
        ("status:bogus", 7),
        ("colour:red", 0),
        ("status:open AND", 15),
        ("status open", 7),
    ],
)
def test_malformed_q_points_at_error(client, as_creator, sample, q, position):
    response = client.get("/tasks", query_string={"q": q}, headers=as_creator)

    body = response.get_json()
    assert response.status_code == 400
    assert body["position"] == position
    assert f"position {position}" in body["detail"]


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ("status=done", "status"),
        ("limit=0", "limit"),
        ("limit=5000", "limit"),
        ("sort=subject", "sort"),
        ("cursor=%%%", "cursor"),
        ("colour=red", "colour"),
    ],
)
def test_bad_parameters_are_400(client, as_creator, sample, query, field):
    response = client.get(f"/tasks?{query}", headers=as_creator)

    assert response.status_code == 400
    assert response.get_json()["errors"][0]["field"] == field


@pytest.mark.parametrize("sort", ["-id", "id", "-modified_at", "modified_at"])
def test_pages_cover_everything_once(client, as_creator, sample, sort):
    seen = []
    cursor = None
    while True:
        params = {"limit": 2, "sort": sort}
        if cursor:
            params["cursor"] = cursor
        body = client.get("/tasks", query_string=params, headers=as_creator).get_json()
        seen.extend(t["id"] for t in body["tasks"])
        cursor = body["next_cursor"]
        if cursor is None:
            break

    assert sorted(seen) == sorted(sample.values())
    assert len(seen) == len(set(seen))


def test_default_sort_newest_first(client, as_creator, sample):
    ids = [
        t["id"] for t in client.get("/tasks", headers=as_creator).get_json()["tasks"]
    ]

    assert ids == sorted(ids, reverse=True)


def test_include_total(client, as_creator, sample):
    body = client.get(
        "/tasks?status=open&limit=1&include_total=true", headers=as_creator
    )

    assert body.get_json()["total"] == 2


def test_list_query_count_is_constant(client, as_creator, sample):
    """The list runs a fixed number of SQL statements, whatever the page size."""
    client.get("/tasks", headers=as_creator)  # warm up the token's last_used_at
    statements = []
    original = database.obj.execute_sql

    def counting(sql, params=None, *args, **kwargs):
        statements.append(sql)
        return original(sql, params, *args, **kwargs)

    database.obj.execute_sql = counting
    try:
        client.get("/tasks?limit=200", headers=as_creator)
    finally:
        database.obj.execute_sql = original

    selects = [s for s in statements if s.lstrip().upper().startswith("SELECT")]
    assert len(selects) == 2  # the token, then one page of tasks


def test_repeated_first_page_sees_new_data(client, as_creator, sample):
    """The cache keeps a first page's SQL, never its rows."""
    url = "/tasks?q=status:open&sort=id"
    before = threads(client.get(url, headers=as_creator))

    tasks.create_task(actor(), {"thread_id": "t6"})
    after = threads(client.get(url, headers=as_creator))

    assert after == sorted([*before, "t6"])


def test_cached_first_page_is_per_caller(client, as_creator, as_assignee, sample):
    url = "/tasks?assigned_to=me"

    mine = threads(client.get(url, headers=as_assignee))
    theirs = threads(client.get(url, headers=as_creator))

    assert mine == ["t1", "t2", "t4"]
    assert theirs == []
