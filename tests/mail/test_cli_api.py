"""The mail reader's CLI commands and the /mail/errors endpoint."""

from __future__ import annotations

from datetime import datetime

from core.mail import poll_mailbox_once
from core.mail.poll import LOCK_KEY, LockHolder
from core.models import SyncState, Task
from tests.mail.conftest import make_email


def quarantine_one(make_settings, maildir):
    settings = make_settings(max_message_bytes=500)
    maildir.drop(make_email(body="x" * 1000, message_id="<big@client.example.com>"))
    poll_mailbox_once(settings)
    return settings


def test_poll_mail_command(runner, maildir):
    maildir.drop(make_email())

    result = runner.invoke(args=["poll-mail"])

    assert result.exit_code == 0, result.output
    assert result.output.strip() == "Handled 1 message."
    assert Task.select().count() == 1


def test_poll_mail_fails_while_locked(runner, maildir):
    held = LockHolder("other-host", 4242, "2026-12-01T09:00:00Z", "abc").value
    SyncState.create(key=LOCK_KEY, value=held, updated_at=datetime.utcnow())
    maildir.drop(make_email())

    result = runner.invoke(args=["poll-mail"])

    assert result.exit_code == 1
    assert "process 4242 on other-host" in result.output
    assert "--force-unlock" in result.output
    assert Task.select().count() == 0


def test_poll_mail_force_unlock(runner, maildir):
    held = LockHolder("other-host", 4242, "2026-12-01T09:00:00Z", "abc").value
    SyncState.create(key=LOCK_KEY, value=held, updated_at=datetime.utcnow())
    maildir.drop(make_email())

    result = runner.invoke(args=["poll-mail", "--force-unlock"])

    assert result.exit_code == 0, result.output
    assert "Released the poll lock of process 4242 on other-host" in result.output
    assert "Handled 1 message." in result.output
    assert Task.select().count() == 1


def test_mail_errors_command_lists_quarantine(runner, make_settings, maildir):
    quarantine_one(make_settings, maildir)

    result = runner.invoke(args=["mail-errors"])

    assert result.exit_code == 0, result.output
    line = result.output.strip()
    assert "<big@client.example.com>" in line
    assert "MAX_MESSAGE_BYTES=500" in line
    assert "maildir:000001.test.eml" in line
    assert "/quarantine/" in line


def test_mail_errors_command_when_empty(runner):
    result = runner.invoke(args=["mail-errors"])

    assert result.exit_code == 0
    assert result.output.strip() == "No quarantined messages."


def test_errors_endpoint_needs_token(client):
    response = client.get("/mail/errors")

    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"] == "Bearer"


def test_errors_endpoint_lists_quarantine(client, make_settings, maildir, as_stranger):
    quarantine_one(make_settings, maildir)

    response = client.get("/mail/errors", headers=as_stranger)

    assert response.status_code == 200
    [item] = response.get_json()["items"]
    assert item["message_id"] == "<big@client.example.com>"
    assert item["source"] == "maildir"
    assert "MAX_MESSAGE_BYTES=500" in item["error"]
    assert item["size"] > 500
    assert item["created_at"].endswith("Z")


def test_errors_endpoint_rejects_bad_limit(client, as_creator):
    response = client.get("/mail/errors?limit=0", headers=as_creator)

    assert response.status_code == 400
    assert "limit" in response.get_json()["detail"]
