"""Build an authorised Gmail API client for the mailbox.

Two kinds of credentials are supported:

- an authorised-user token file (``GMAIL_TOKEN_FILE``) that contains a
  refresh token. ``flask --app wsgi gmail-authorize`` writes it once. When
  the stored access token has expired, building the client refreshes it and
  writes the file back.
- a service account key (``GMAIL_SERVICE_ACCOUNT_FILE``) with domain-wide
  delegation, impersonating ``MAILBOX_ADDRESS`` (Google Workspace only).
  It wins when both files are set.

The mail reader and the reminder sender share this client.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import google.auth.transport.requests
import google_auth_httplib2
import httplib2
from google.auth.credentials import Credentials
from google.oauth2 import credentials as user_credentials
from google.oauth2 import service_account
from googleapiclient.discovery import build

from core.config import ConfigError, Settings

logger = logging.getLogger(__name__)

# gmail.modify covers reading messages and sending replies, which are the two
# things threadtask does; it cannot delete mail permanently.
SCOPES = ["https://www.googleapis.com/auth/gmail.modify"]
HTTP_TIMEOUT_SECONDS = 60
REAUTHORIZE_HINT = (
    "run 'flask --app wsgi gmail-authorize' to authorise the mailbox again, "
    "or check the service account's domain-wide delegation"
)


def build_gmail_service(settings: Settings, http: Any = None) -> Any:
    """Return a Gmail API resource; ``http`` replaces the network in tests.

    The discovery document bundled with google-api-python-client is used, so
    building the client makes no request.
    """
    if http is None:
        credentials = load_credentials(settings)
        http = google_auth_httplib2.AuthorizedHttp(
            credentials, http=httplib2.Http(timeout=HTTP_TIMEOUT_SECONDS)
        )
    return build("gmail", "v1", http=http, cache_discovery=False, static_discovery=True)


# google-auth sends token refreshes through this transport. Tests replace it
# with one that sends them to a local OAuth endpoint.
_token_request: Any = None


def set_token_request(request: Any) -> None:
    global _token_request
    _token_request = request


def token_request() -> Any:
    global _token_request
    if _token_request is None:
        _token_request = google.auth.transport.requests.Request()
    return _token_request


def load_credentials(settings: Settings) -> Credentials:
    """Load the configured credentials, refreshing a stored user token.

    Raises ConfigError when neither credential file is set, and
    google.auth.exceptions.RefreshError when Google rejects the refresh token.
    """
    if settings.gmail_service_account_file:
        return service_account.Credentials.from_service_account_file(
            str(settings.gmail_service_account_file),
            scopes=SCOPES,
            subject=settings.mailbox_address,
        )
    if settings.gmail_token_file:
        return _load_user_token(Path(settings.gmail_token_file))
    raise ConfigError(
        "MAIL_BACKEND=gmail needs GMAIL_TOKEN_FILE (then run 'flask --app wsgi "
        "gmail-authorize') or GMAIL_SERVICE_ACCOUNT_FILE"
    )


def _load_user_token(path: Path) -> Credentials:
    if not path.exists():
        raise ConfigError(
            f"GMAIL_TOKEN_FILE={path} does not exist; run 'flask --app wsgi "
            "gmail-authorize' to create it"
        )
    credentials = user_credentials.Credentials.from_authorized_user_file(
        str(path), SCOPES
    )
    if not credentials.valid:
        credentials.refresh(token_request())
        write_token_file(path, credentials)
        logger.info("refreshed the Gmail access token and saved it to %s", path)
    return credentials


def write_token_file(path: Path, credentials: user_credentials.Credentials) -> None:
    """Write the token file readable by its owner only, replacing it atomically."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(path.name + ".tmp")
    # A leftover file would keep its old mode, so it is removed first.
    temporary.unlink(missing_ok=True)
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
        handle.write(credentials.to_json())
    os.replace(temporary, path)


def authorize(settings: Settings, *, port: int = 0, open_browser: bool = True) -> Path:
    """Run the one-time OAuth consent in a browser and write the token file.

    The consent page redirects to a server on 127.0.0.1 that this function
    starts for the length of the flow.
    """
    from google_auth_oauthlib.flow import InstalledAppFlow

    if not settings.gmail_client_secrets_file:
        raise ConfigError(
            "GMAIL_CLIENT_SECRETS_FILE is not set; download the OAuth client "
            "(type Desktop app) from the Google Cloud console and point it there"
        )
    if not settings.gmail_token_file:
        raise ConfigError(
            "GMAIL_TOKEN_FILE is not set; name the file to write the token to"
        )
    flow = InstalledAppFlow.from_client_secrets_file(
        str(settings.gmail_client_secrets_file), SCOPES
    )
    credentials = flow.run_local_server(
        host="127.0.0.1",
        port=port,
        open_browser=open_browser,
        access_type="offline",
        prompt="consent",
    )
    path = Path(settings.gmail_token_file)
    write_token_file(path, credentials)
    return path
