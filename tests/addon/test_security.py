"""Every add-on endpoint needs Google's signed tokens, and a bad one changes nothing."""

from __future__ import annotations

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from google.auth import crypt

from addon.actions import HANDLERS
from core.models import Event, Task
from tests.addon.conftest import BASE_URL, CLIENT_ID, SERVICE_ACCOUNT
from tests.conftest import ASSIGNEE, CREATOR, GoogleSigner

PATHS = sorted(HANDLERS)
STATUS_PATH = "/addon/actions/status"


def close_event(addon, task, **event_fields):
    return addon.event(
        CREATOR,
        thread_id="thread-1",
        parameters={"task_id": str(task.id), "status": "closed"},
        **event_fields,
    )


def assert_unchanged(task):
    assert Task.get_by_id(task.id).status == "open"
    assert Task.get_by_id(task.id).version == task.version
    assert Event.select().where(Event.task == task).count() == 1


@pytest.mark.parametrize("path", PATHS)
def test_missing_token_rejected(addon, open_task, path):
    response = addon.client.post(path, json=close_event(addon, open_task))

    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"] == "Bearer"
    assert "no Bearer ID token" in response.get_json()["detail"]
    assert_unchanged(open_task)


@pytest.mark.parametrize("path", PATHS)
def test_wrong_audience_rejected(addon, open_task, path):
    # A token Google minted for another endpoint of the add-on.
    other = next(candidate for candidate in PATHS if candidate != path)
    token = addon.system_token(other)

    response = addon.post(path, close_event(addon, open_task), token=token)

    assert response.status_code == 401
    assert_unchanged(open_task)


def test_expired_system_token_rejected(addon, open_task):
    token = addon.system_token(STATUS_PATH, expires_in=-3600)

    response = addon.post(STATUS_PATH, close_event(addon, open_task), token=token)

    assert response.status_code == 401
    assert "expired" in response.get_json()["detail"].lower()
    assert_unchanged(open_task)


def test_wrong_service_account_rejected(addon, open_task):
    token = addon.system_token(STATUS_PATH, email="intruder@evil.example")

    response = addon.post(STATUS_PATH, close_event(addon, open_task), token=token)

    assert response.status_code == 401
    assert "not to the add-on's service account" in response.get_json()["detail"]
    assert_unchanged(open_task)


def test_unverified_service_account_rejected(addon, open_task):
    token = addon.system_token(STATUS_PATH, email_verified=False)

    response = addon.post(STATUS_PATH, close_event(addon, open_task), token=token)

    assert response.status_code == 401
    assert_unchanged(open_task)


def test_system_token_of_other_key_rejected(addon, open_task):
    forger = GoogleSigner()
    token = forger.sign(BASE_URL + STATUS_PATH, SERVICE_ACCOUNT)

    response = addon.post(STATUS_PATH, close_event(addon, open_task), token=token)

    assert response.status_code == 401
    assert_unchanged(open_task)


def test_forged_user_token_rejected(addon, google_signer, open_task):
    # Signed by another key that claims the key id Google's certificate has.
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    forger = GoogleSigner()
    forger.signer = crypt.RSASigner.from_string(pem, key_id=google_signer.key_id)
    forged = forger.sign(CLIENT_ID, CREATOR)

    response = addon.post(STATUS_PATH, close_event(addon, open_task, user_token=forged))

    assert response.status_code == 401
    assert "Could not verify token signature" in response.get_json()["detail"]
    assert_unchanged(open_task)


def test_unsigned_user_token_rejected(addon, open_task):
    header = "eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0"
    payload = addon.user_token(CREATOR).split(".")[1]
    unsigned = f"{header}.{payload}."

    response = addon.post(
        STATUS_PATH, close_event(addon, open_task, user_token=unsigned)
    )

    assert response.status_code == 401
    assert_unchanged(open_task)


def test_user_token_for_other_client_rejected(addon, open_task, caplog):
    token = addon.user_token(CREATOR, audience="other-app.apps.googleusercontent.com")

    response = addon.post(STATUS_PATH, close_event(addon, open_task, user_token=token))

    assert response.status_code == 401
    # The log names the token's audience, so a wrong setting is easy to fix.
    assert "other-app.apps.googleusercontent.com" in caplog.text
    assert_unchanged(open_task)


def test_expired_user_token_rejected(addon, open_task):
    token = addon.user_token(CREATOR, expires_in=-3600)

    response = addon.post(STATUS_PATH, close_event(addon, open_task, user_token=token))

    assert response.status_code == 401
    assert_unchanged(open_task)


def test_user_token_without_verified_email_rejected(addon, open_task):
    token = addon.user_token(CREATOR, email_verified=False)

    response = addon.post(STATUS_PATH, close_event(addon, open_task, user_token=token))

    assert response.status_code == 401
    assert "no verified email" in response.get_json()["detail"]
    assert_unchanged(open_task)


def test_missing_user_token_rejected(addon, open_task):
    event = close_event(addon, open_task)
    del event["authorizationEventObject"]["userIdToken"]

    response = addon.post(STATUS_PATH, event)

    assert response.status_code == 401
    assert "userIdToken" in response.get_json()["detail"]
    assert_unchanged(open_task)


def test_user_comes_from_signed_token_only(addon, open_task):
    # The body names the creator everywhere it can, but the signed user token
    # says the assignee, who may not close the task.
    event = close_event(addon, open_task, user_token=addon.user_token(ASSIGNEE))
    event["commonEventObject"]["parameters"]["email"] = CREATOR
    event["user"] = {"email": CREATOR}

    body = addon.post(STATUS_PATH, event).get_json()

    notification = body["renderActions"]["action"]["notification"]["text"]
    assert notification == f"Only {CREATOR}, who created this task, can close it."
    assert_unchanged(open_task)


def test_unconfigured_addon_unavailable(app, addon, open_task):
    settings = app.config["SETTINGS"].model_copy(update={"addon_service_account": ""})
    app.config["SETTINGS"] = settings

    response = addon.post(STATUS_PATH, close_event(addon, open_task))

    assert response.status_code == 503
    assert "ADDON_SERVICE_ACCOUNT" in response.get_json()["detail"]
    assert_unchanged(open_task)
