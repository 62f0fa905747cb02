from core import tasks
from tests.conftest import ASSIGNEE, CREATOR, actor


def test_create_and_fix_task(db):
    task = tasks.create_task(actor(), {"thread_id": "t1", "subject": "Printer", "assigned_to": ASSIGNEE})
    fixed = tasks.update_task(actor(ASSIGNEE), task.id, {"status": "fixed"})
    assert fixed.status == "fixed"
    assert fixed.creator_email == CREATOR
