"""Flask CLI commands, start-up configuration and the package layout."""

import ast
import os
import subprocess
import sys
from pathlib import Path

import pytest

from core.config import ConfigError, load_settings
from core.models import ApiToken

ROOT = Path(__file__).resolve().parent.parent


def test_init_db_twice(runner):
    first = runner.invoke(args=["init-db"])
    second = runner.invoke(args=["init-db"])

    assert first.exit_code == 0, first.output
    assert second.exit_code == 0
    assert "up to date" in second.output


def test_create_token_prints_secret(runner):
    result = runner.invoke(
        args=["create-token", "Carol <Carol@Example.com>", "--service"]
    )

    assert result.exit_code == 0, result.output
    secret = result.stdout.strip().splitlines()[-1]
    assert secret.startswith("tt_")
    row = ApiToken.get()
    assert row.email == "carol@example.com"
    assert row.is_service


def test_create_token_rejects_bad_email(runner):
    result = runner.invoke(args=["create-token", "not-an-email"])

    assert result.exit_code != 0
    assert "not-an-email" in result.output
    assert ApiToken.select().count() == 0


def test_list_and_revoke_tokens(runner):
    runner.invoke(args=["create-token", "carol@example.com"])

    listed = runner.invoke(args=["list-tokens"])
    revoked = runner.invoke(args=["revoke-token", "1"])
    again = runner.invoke(args=["revoke-token", "1"])

    assert "carol@example.com" in listed.output
    assert "tt_" in listed.output
    assert "active" in listed.output
    assert revoked.exit_code == 0
    assert again.exit_code != 0
    assert "list-tokens" in again.output


@pytest.mark.parametrize(
    ("variable", "value", "words"),
    [
        ("REMINDER_TICK_MINUTES", "soon", ["REMINDER_TICK_MINUTES", "soon", "integer"]),
        ("REMINDER_INTERVALS", "critical=5m", ["critical", "REMINDER_TICK_MINUTES"]),
        ("REMINDER_INTERVALS", "urgent=1h", ["urgent", "criticality"]),
        ("MAIL_BACKEND", "imap", ["MAIL_BACKEND", "imap", "maildir"]),
        ("MAX_UPLOAD_BYTES", "-1", ["MAX_UPLOAD_BYTES", "greater than 0"]),
        ("REMINDER_INTERVALS", "low=3000000d", ["3000000d", "366 days"]),
        ("REMINDER_INTERVALS", "critical=99999999999999d", ["366 days"]),
        ("REDIS_URL", "notaurl", ["REDIS_URL", "notaurl", "redis://"]),
        ("TRIAGE_EMAIL", "not an address", ["TRIAGE_EMAIL", "triage@example.com"]),
    ],
)
def test_invalid_setting_names_variable(monkeypatch, variable, value, words):
    monkeypatch.setenv(variable, value)

    with pytest.raises(ConfigError) as raised:
        load_settings(_env_file=None)

    for word in words:
        assert word in str(raised.value)


def test_bad_setting_stops_cli_startup(tmp_path):
    env = {**os.environ, "DATA_DIR": str(tmp_path), "REMINDER_TICK_MINUTES": "soon"}

    result = subprocess.run(
        [sys.executable, "-m", "flask", "--app", "wsgi", "init-db"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )

    assert result.returncode != 0
    assert "REMINDER_TICK_MINUTES='soon'" in result.stderr


def test_admin_emails_parsed(monkeypatch):
    monkeypatch.setenv("ADMIN_EMAILS", " Boss@Example.com ,ops@example.com")

    settings = load_settings(_env_file=None)

    assert settings.admin_emails == ("boss@example.com", "ops@example.com")


def test_core_imports_no_channel_package():
    forbidden = {"addon", "bot", "scheduler"}
    offenders = []
    for path in (ROOT / "core").rglob("*.py"):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            names = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            offenders += [f"{path}: {n}" for n in names if n.split(".")[0] in forbidden]

    assert offenders == []


@pytest.mark.parametrize(
    ("variable", "value", "words"),
    [
        ("LOG_LEVEL", "LOUD", ["LOG_LEVEL", "LOUD", "DEBUG"]),
        ("DATABASE_URL", "mysql://x", ["DATABASE_URL", "postgresql://"]),
        ("ADMIN_EMAILS", "notanemail", ["ADMIN_EMAILS", "notanemail"]),
        ("ALLOWED_EMAIL_DOMAINS", "exa mple.com", ["ALLOWED_EMAIL_DOMAINS", "domain"]),
        ("PUBLIC_BASE_URL", "notaurl", ["PUBLIC_BASE_URL", "https://"]),
    ],
)
def test_more_invalid_settings(monkeypatch, variable, value, words):
    monkeypatch.setenv(variable, value)

    with pytest.raises(ConfigError) as raised:
        load_settings(_env_file=None)

    for word in words:
        assert word in str(raised.value)


def test_base_url_trailing_slash_dropped(monkeypatch):
    monkeypatch.setenv("PUBLIC_BASE_URL", "https://tasks.example.com/")

    assert load_settings(_env_file=None).public_base_url == "https://tasks.example.com"


def test_short_secret_key_not_echoed(monkeypatch):
    monkeypatch.setenv("SECRET_KEY", "too-short-to-sign")

    with pytest.raises(ConfigError) as raised:
        load_settings(_env_file=None)

    message = str(raised.value)
    assert "too-short-to-sign" not in message
    assert "SECRET_KEY=<hidden, 17 characters>" in message
    assert "at least 32 characters" in message


def test_triage_outside_allowed_domains_rejected(monkeypatch):
    monkeypatch.setenv("ALLOWED_EMAIL_DOMAINS", "example.org")
    monkeypatch.setenv("TRIAGE_EMAIL", "ops@outside.test")

    with pytest.raises(ConfigError) as raised:
        load_settings(_env_file=None)

    message = str(raised.value)
    assert "TRIAGE_EMAIL ops@outside.test is outside ALLOWED_EMAIL_DOMAINS" in message
    assert "(example.org)" in message


@pytest.mark.parametrize(
    ("value", "words"),
    [
        ("garbage", "is not a time"),
        ("9999-12-31T23:59:59Z", "too far ahead"),
    ],
)
def test_clock_rejects_bad_now(value, words, capsys):
    from scheduler.clock import main

    with pytest.raises(SystemExit) as raised:
        main(["--once", "--now", value])

    assert raised.value.code == 2
    assert words in capsys.readouterr().err


def test_bad_setting_stops_gunicorn(tmp_path):
    env = {**os.environ, "DATA_DIR": str(tmp_path), "SECRET_KEY": "short"}
    gunicorn = Path(sys.executable).with_name("gunicorn")

    result = subprocess.run(
        [str(gunicorn), "--bind", "127.0.0.1:0", "--workers", "1", "wsgi:app"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )

    # Exit code 4 makes gunicorn stop instead of restarting the worker.
    assert result.returncode == 4
    assert "SECRET_KEY=<hidden, 5 characters>" in result.stderr
    assert "short" not in result.stderr.replace("SECRET_KEY", "")


def test_url_password_not_echoed(monkeypatch):
    monkeypatch.setenv("REDIS_URL", "redis+tls://:hunter2@127.0.0.1:6379/11")

    with pytest.raises(ConfigError) as raised:
        load_settings(_env_file=None)

    assert "hunter2" not in str(raised.value)
    assert "redis+tls://:***@127.0.0.1:6379/11" in str(raised.value)


@pytest.mark.parametrize(
    ("variable", "value", "words"),
    [
        ("REDIS_URL", "redis://127.0.0.1:6379/abc", "'abc' is not a number"),
        ("REDIS_URL", "redis://127.0.0.1:notaport/11", "notaport"),
        ("ALLOWED_EMAIL_DOMAINS", " , ", "lists nothing"),
        ("SECRET_KEY", " " * 40, "besides spaces"),
        ("REMINDER_INTERVALS", "critical=30m,critical=1h", "given twice"),
    ],
)
def test_more_bad_settings_rejected(monkeypatch, variable, value, words):
    monkeypatch.setenv(variable, value)

    with pytest.raises(ConfigError) as raised:
        load_settings(_env_file=None)

    assert variable in str(raised.value)
    assert words in str(raised.value)
