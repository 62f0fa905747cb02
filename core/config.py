"""Settings read from environment variables and an optional ``.env`` file.

Every variable is documented in the README with its default. An invalid
value raises ``ConfigError`` at start-up, naming the variable, the value and
what is accepted.
"""

from __future__ import annotations

import re
from datetime import timedelta
from functools import cached_property
from pathlib import Path
from typing import Annotated, Literal

from pydantic import (
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from core.emails import domain_of, normalize_email

CRITICALITIES = ("low", "medium", "high", "critical")
STATUSES = ("open", "fixed", "closed")

DEFAULT_REMINDER_INTERVALS = "critical=30m,high=1h,medium=1d,low=7d"
_DURATION = re.compile(r"^(\d+)\s*([mhdw])$")
_DURATION_UNITS = {"m": "minutes", "h": "hours", "d": "days", "w": "weeks"}
# Longer intervals would put a reminder past any date worth keeping, and
# far enough ones past the largest date Python can hold.
MAX_DURATION = timedelta(days=366)

MIN_SECRET_KEY_LENGTH = 32
# The schemes each URL setting accepts, and the fix an error suggests.
URL_SCHEMES = {
    "database_url": (
        ("sqlite", "postgres", "postgresql"),
        "use sqlite:///PATH or postgresql://USER@HOST:PORT/NAME, "
        "or leave it empty for SQLite under DATA_DIR",
    ),
    "redis_url": (
        ("redis", "rediss", "unix"),
        "use redis://HOST:PORT/DB, rediss://HOST:PORT/DB or "
        "unix:///PATH/TO/SOCKET, or leave it empty for the on-disk queue",
    ),
}
SECRET_FIELDS = ("secret_key", "slack_signing_secret", "slack_bot_token")
_DOMAIN = re.compile(
    r"^[a-z0-9]([a-z0-9-]*[a-z0-9])?(\.[a-z0-9]([a-z0-9-]*[a-z0-9])?)*$"
)

CommaList = Annotated[tuple[str, ...], NoDecode]


class ConfigError(Exception):
    """A setting is missing or invalid; the message names it and the fix."""


def parse_duration(text: str) -> timedelta:
    """Parse ``30m``, ``1h``, ``2d`` or ``1w`` into a timedelta."""
    match = _DURATION.match(text.strip().lower())
    if not match:
        raise ValueError(f"{text!r} is not a duration; use a number and m, h, d or w")
    amount, unit = match.groups()
    # More digits than any allowed interval needs could overflow timedelta.
    duration = None
    if len(amount) <= 6:
        duration = timedelta(**{_DURATION_UNITS[unit]: int(amount)})
    if duration is None or duration > MAX_DURATION:
        raise ValueError(
            f"{text!r} is longer than the longest interval, "
            f"{MAX_DURATION.days} days; use a shorter one"
        )
    return duration


def parse_intervals(text: str) -> dict[str, timedelta]:
    """Parse ``critical=30m,high=1h,...`` into one interval per criticality."""
    intervals = {
        key: parse_duration(value)
        for key, value in (
            item.split("=", 1) for item in _split_commas(DEFAULT_REMINDER_INTERVALS)
        )
    }
    seen = set()
    for item in _split_commas(text):
        if "=" not in item:
            raise ValueError(f"{item!r} is not LEVEL=DURATION, for example high=1h")
        key, value = (part.strip().lower() for part in item.split("=", 1))
        if key not in CRITICALITIES:
            raise ValueError(
                f"{key!r} is not a criticality; use one of {CRITICALITIES}"
            )
        if key in seen:
            raise ValueError(f"{key!r} is given twice; give each criticality once")
        seen.add(key)
        intervals[key] = parse_duration(value)
    return intervals


def _split_commas(value: str) -> list[str]:
    return [item.strip() for item in value.split(",") if item.strip()]


class Settings(BaseSettings):
    """All configuration of web, clock and worker processes."""

    model_config = SettingsConfigDict(
        env_file=".env", env_file_encoding="utf-8", extra="ignore", frozen=True
    )

    # Storage
    data_dir: Path = Path("data")
    database_url: str = ""
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"] = "INFO"

    # Access
    admin_emails: CommaList = ()
    allowed_email_domains: CommaList = ()
    google_client_ids: CommaList = ()
    google_hosted_domain: str = ""
    public_base_url: str = "http://127.0.0.1:8000"
    # Signs the preview page's sign-in cookie. Empty: a random key kept in
    # DATA_DIR/secret-key, which serves every process sharing that folder.
    secret_key: str = Field(default="", repr=False)
    max_upload_bytes: int = Field(default=10 * 1024 * 1024, gt=0)

    # Mail reader
    mail_backend: Literal["maildir", "gmail"] = "maildir"
    maildir: Path | None = None
    mailbox_address: str = "tracker@localhost"
    mail_poll_minutes: int = Field(default=5, gt=0)
    max_message_bytes: int = Field(default=25 * 1024 * 1024, gt=0)
    gmail_user: str = "me"
    gmail_token_file: Path | None = None
    gmail_client_secrets_file: Path | None = None
    gmail_service_account_file: Path | None = None
    gmail_full_sync_limit: int = Field(default=500, gt=0)

    # Reminders
    reminder_intervals: str = DEFAULT_REMINDER_INTERVALS
    reminder_tick_minutes: int = Field(default=30, gt=0)
    triage_email: str = ""
    redis_url: str = ""
    outbox_dir: Path | None = None
    queue_dir: Path | None = None
    mail_transport: Literal["outbox", "gmail"] = "outbox"
    send_max_attempts: int = Field(default=3, gt=0)

    # Gmail add-on
    addon_service_account: str = ""
    addon_base_url: str = ""
    addon_oauth_client_id: str = ""

    # Slack
    slack_signing_secret: str = ""
    slack_bot_token: str = ""
    slack_api_base_url: str = "https://slack.com/api/"
    slack_command: str = "/task"
    slack_announce: bool = False
    slack_notify_assignee: bool = False

    @field_validator(
        "admin_emails", "allowed_email_domains", "google_client_ids", mode="before"
    )
    @classmethod
    def _split_list(cls, value: object) -> object:
        if isinstance(value, str):
            items = tuple(item.lower() for item in _split_commas(value))
            # Only commas and spaces would mean "anyone", the opposite of what
            # setting a list intends.
            if value.strip() and not items:
                raise ValueError("lists nothing; give comma-separated values")
            return items
        return value

    @field_validator("log_level", mode="before")
    @classmethod
    def _upper_level(cls, value: object) -> object:
        return value.upper() if isinstance(value, str) else value

    @field_validator("database_url", "redis_url")
    @classmethod
    def _check_url_scheme(cls, value: str, info: ValidationInfo) -> str:
        schemes, hint = URL_SCHEMES[info.field_name]
        scheme = value.split(":", 1)[0].lower() if ":" in value else ""
        if value and scheme not in schemes:
            raise ValueError(hint)
        if value and info.field_name == "redis_url":
            _check_redis_url(value, hint)
        return value

    @field_validator("admin_emails")
    @classmethod
    def _check_admins(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for item in value:
            try:
                normalize_email(item)
            except ValueError as exc:
                raise ValueError(f"{item!r} is not an email address ({exc})") from None
        return value

    @field_validator("triage_email")
    @classmethod
    def _check_triage_email(cls, value: str) -> str:
        if not value.strip():
            return ""
        try:
            return normalize_email(value.strip())
        except ValueError as exc:
            raise ValueError(
                f"{exc}; use one address such as triage@example.com"
            ) from None

    @model_validator(mode="after")
    def _check_triage_domain(self) -> Settings:
        allowed = self.allowed_email_domains
        triage = self.triage_email
        if triage and allowed and domain_of(triage) not in allowed:
            raise ValueError(
                f"TRIAGE_EMAIL {triage} is outside ALLOWED_EMAIL_DOMAINS "
                f"({', '.join(allowed)}), so no reminder could go to it; use an "
                "address in one of those domains"
            )
        return self

    @field_validator("allowed_email_domains")
    @classmethod
    def _check_domains(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for item in value:
            if not _DOMAIN.match(item):
                raise ValueError(f"{item!r} is not a domain name such as example.com")
        return value

    @field_validator("public_base_url", "addon_base_url", "slack_api_base_url")
    @classmethod
    def _check_url(cls, value: str, info: ValidationInfo) -> str:
        if value and not re.match(r"^https?://[^/\s]+", value):
            raise ValueError("must be an http:// or https:// URL")
        if info.field_name == "slack_api_base_url":
            return value
        # Links are built as BASE + "/tasks/1", so a trailing slash is dropped.
        return value.rstrip("/")

    @field_validator("secret_key")
    @classmethod
    def _check_secret_key(cls, value: str) -> str:
        if value and len(value.strip()) < MIN_SECRET_KEY_LENGTH:
            raise ValueError(
                f"must be at least {MIN_SECRET_KEY_LENGTH} characters besides "
                f"spaces, not {len(value.strip())}; make one with: python -c "
                '"import secrets; print(secrets.token_hex(32))"'
            )
        return value

    @field_validator("reminder_intervals")
    @classmethod
    def _check_intervals(cls, value: str) -> str:
        parse_intervals(value)
        return value

    @model_validator(mode="after")
    def _check_tick(self) -> Settings:
        tick = timedelta(minutes=self.reminder_tick_minutes)
        for level, interval in self.intervals.items():
            if interval < tick:
                raise ValueError(
                    f"REMINDER_INTERVALS sets {level} to {interval}, shorter than "
                    f"the clock tick REMINDER_TICK_MINUTES={self.reminder_tick_minutes}; "
                    "a reminder cannot be sent more often than the clock wakes, so "
                    "raise the interval or lower the tick"
                )
        return self

    @cached_property
    def intervals(self) -> dict[str, timedelta]:
        # Settings are frozen, so the parsed intervals never go stale; the
        # sender reads them several times per email.
        return parse_intervals(self.reminder_intervals)

    @property
    def resolved_database_url(self) -> str:
        return self.database_url or f"sqlite:///{self.data_dir / 'threadtask.db'}"

    @property
    def resolved_maildir(self) -> Path:
        return self.maildir or self.data_dir / "maildir"

    @property
    def resolved_outbox_dir(self) -> Path:
        return self.outbox_dir or self.data_dir / "outbox"

    @property
    def resolved_queue_dir(self) -> Path:
        return self.queue_dir or self.data_dir / "queue"

    @property
    def quarantine_dir(self) -> Path:
        return self.data_dir / "quarantine"


def load_settings(**overrides: object) -> Settings:
    """Read settings from the environment, raising ConfigError on bad values."""
    try:
        return Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as exc:
        raise ConfigError(_describe(exc)) from None


def _describe(exc: ValidationError) -> str:
    lines = ["invalid configuration:"]
    for error in exc.errors():
        variable = "_".join(str(part) for part in error["loc"]).upper()
        value = error.get("input")
        displayed = repr(value)
        # Start-up errors end up in logs, which must not contain secrets.
        if variable.lower() in SECRET_FIELDS:
            displayed = f"<hidden, {len(str(value))} characters>"
        elif variable.lower() in URL_SCHEMES:
            displayed = repr(_without_password(str(value)))
        message = error["msg"].removeprefix("Value error, ")
        if variable:
            lines.append(f"  {variable}={displayed}: {message}")
        else:
            lines.append(f"  {message}")
    return "\n".join(lines)


def _check_redis_url(url: str, hint: str) -> None:
    from redis.connection import parse_url

    try:
        parsed = parse_url(url)
    except ValueError as exc:
        raise ValueError(f"{exc}; {hint}") from None
    # redis-py ignores a database path that is not a number and uses db 0.
    path = url.split("://", 1)[1].split("?", 1)[0]
    database = (
        path.split("/", 1)[1] if "/" in path and not url.startswith("unix") else ""
    )
    if database and "db" not in parsed:
        raise ValueError(f"the database {database!r} is not a number; {hint}")


def _without_password(url: str) -> str:
    """Return ``url`` with the password of its user part replaced by ***."""
    return re.sub(r"^([^:/]*://[^:/@]*:)[^@]*@", r"\1***@", url)


_current: Settings | None = None


def get_settings() -> Settings:
    """Return the settings this process was configured with."""
    global _current
    if _current is None:
        _current = load_settings()
    return _current


def use_settings(settings: Settings) -> Settings:
    """Make ``settings`` the process-wide settings, for app factories and tests."""
    global _current
    _current = settings
    return settings
