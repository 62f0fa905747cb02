"""Shared fixtures: an app on SQLite or the real PostgreSQL, personas, tokens,
and a local signer for Google ID tokens."""

from __future__ import annotations

import datetime
import json
import os
import secrets
from collections.abc import Iterator
from pathlib import Path

import psycopg2
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID
from google.auth import crypt, jwt

from core import auth
from core.config import Settings
from core.db import database, migrate_database
from core.tasks import Actor

CREATOR = "carol@example.com"
ASSIGNEE = "alex@example.com"
STRANGER = "sam@example.com"
ADMIN = "admin@example.com"
SERVICE = "mail-bot@example.com"
MAILBOX = "tracker@example.com"

POSTGRES_URL = os.environ.get(
    "TEST_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/test"
)
CORPUS = Path(__file__).parent / "corpus"


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "postgres: runs against the real PostgreSQL")


@pytest.fixture(scope="session")
def postgres_schema() -> Iterator[str]:
    """A schema of its own in the PostgreSQL test database, dropped at the end."""
    try:
        conn = psycopg2.connect(POSTGRES_URL, connect_timeout=5)
    except psycopg2.OperationalError as exc:
        if os.environ.get("CI") == "true":
            pytest.fail(f"PostgreSQL at {POSTGRES_URL} is required under CI: {exc}")
        pytest.skip(f"PostgreSQL at {POSTGRES_URL} is not reachable: {exc}")
    conn.autocommit = True
    schema = f"tt_test_{os.getpid()}_{secrets.token_hex(3)}"
    with conn.cursor() as cursor:
        cursor.execute(f"CREATE SCHEMA {schema}")
    yield schema
    with conn.cursor() as cursor:
        cursor.execute(f"DROP SCHEMA {schema} CASCADE")
    conn.close()


@pytest.fixture(params=["sqlite", "postgres"])
def backend(request: pytest.FixtureRequest) -> str:
    return request.param


@pytest.fixture
def database_url(backend: str, tmp_path: Path, request: pytest.FixtureRequest) -> str:
    if backend == "sqlite":
        return f"sqlite:///{tmp_path / 'threadtask.db'}"
    schema = request.getfixturevalue("postgres_schema")
    return f"{POSTGRES_URL}?options=-c%20search_path%3D{schema}"


@pytest.fixture
def make_settings(tmp_path: Path, database_url: str):
    """Build Settings for a test, ignoring any .env file of the developer."""

    def build(**overrides: object) -> Settings:
        values: dict[str, object] = {
            "data_dir": tmp_path / "data",
            "database_url": database_url,
            "admin_emails": (ADMIN,),
            "mailbox_address": MAILBOX,
            "public_base_url": "http://127.0.0.1:8000",
            "redis_url": "",
        }
        values.update(overrides)
        return Settings(_env_file=None, **values)  # type: ignore[call-arg]

    return build


@pytest.fixture
def settings(make_settings) -> Settings:
    return make_settings()


@pytest.fixture
def app(settings: Settings, backend: str) -> Iterator:
    from wsgi import create_app

    flask_app = create_app(settings)
    flask_app.config["TESTING"] = True
    with database.connection_context():
        migrate_database()
    database.connect(reuse_if_open=True)
    yield flask_app
    if not database.is_closed():
        database.close()
    if backend == "postgres":
        _truncate_postgres()
    auth.set_google_request(None)


def _truncate_postgres() -> None:
    with database.connection_context():
        tables = [t for t in database.get_tables() if t != "schema_migration"]
        if tables:
            database.execute_sql(
                f"TRUNCATE {', '.join(tables)} RESTART IDENTITY CASCADE"
            )


@pytest.fixture
def db(app):
    """The app's database, connected, for tests that call the core directly."""
    return database


@pytest.fixture
def client(app):
    return app.test_client()


@pytest.fixture
def runner(app):
    return app.test_cli_runner()


@pytest.fixture
def token_for(app):
    """Return a function that creates an API token and the header that sends it."""

    def make(email: str, *, service: bool = False) -> dict[str, str]:
        _, secret = auth.create_token(email, service=service)
        return {"Authorization": f"Bearer {secret}"}

    return make


@pytest.fixture
def as_creator(token_for) -> dict[str, str]:
    return token_for(CREATOR)


@pytest.fixture
def as_assignee(token_for) -> dict[str, str]:
    return token_for(ASSIGNEE)


@pytest.fixture
def as_stranger(token_for) -> dict[str, str]:
    return token_for(STRANGER)


@pytest.fixture
def as_admin(token_for) -> dict[str, str]:
    return token_for(ADMIN)


@pytest.fixture
def as_service(token_for) -> dict[str, str]:
    return token_for(SERVICE, service=True)


def actor(email: str = CREATOR, channel: str = "api") -> Actor:
    return Actor(email=email, channel=channel)


class GoogleSigner:
    """Signs ID tokens with a local RSA key and serves its certificate.

    google-auth fetches signing certificates through a request function; the
    fixture installs ``request`` so verification runs for real against our key.
    """

    def __init__(self) -> None:
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.key_id = secrets.token_hex(8)
        pem = key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        self.signer = crypt.RSASigner.from_string(pem, key_id=self.key_id)
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "test-signer")])
        now = datetime.datetime.now(datetime.UTC)
        certificate = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=1))
            .sign(key, hashes.SHA256())
        )
        self.certificate = certificate.public_bytes(serialization.Encoding.PEM).decode()
        self.requests: list[str] = []

    def sign(
        self, audience: str, email: str, *, expires_in: int = 600, **claims
    ) -> str:
        now = int(datetime.datetime.now(datetime.UTC).timestamp())
        payload = {
            "iss": "https://accounts.google.com",
            "aud": audience,
            "sub": str(abs(hash(email))),
            "email": email,
            "email_verified": True,
            "iat": now - 5,
            "exp": now + expires_in,
        }
        payload.update(claims)
        return jwt.encode(self.signer, payload).decode()

    def request(self, url: str, method: str = "GET", **kwargs):
        self.requests.append(url)
        body = json.dumps({self.key_id: self.certificate}).encode()
        return _CertResponse(body)


class _CertResponse:
    status = 200
    headers: dict[str, str] = {}

    def __init__(self, data: bytes) -> None:
        self.data = data


@pytest.fixture
def google_signer(app) -> GoogleSigner:
    signer = GoogleSigner()
    auth.set_google_request(signer.request)
    return signer
