"""Addresses read from To, Cc and From: encoded names, odd and invalid forms."""

from __future__ import annotations

import logging

import pytest

from core.emails import normalize_email
from core.mail import poll_mailbox_once
from core.mail.classify import classify
from core.mail.parse import parse_message
from core.models import Delivery, MailMessage, Task
from tests.conftest import CORPUS, CREATOR, MAILBOX
from tests.mail.conftest import make_email


def raw_email(to: str, sender: str = CREATOR) -> bytes:
    """Return an email whose To header is written exactly as given."""
    return (
        f"From: {sender}\r\nTo: {to}\r\nCc: {MAILBOX}\r\n"
        "Subject: Printer on floor 2 is jammed\r\n"
        "Message-ID: <raw@client.example.com>\r\n\r\nIt jams.\r\n"
    ).encode("utf-8", "surrogateescape")


@pytest.mark.parametrize(
    "to",
    [
        "=?utf-8?Q?boss=40example.com?= <dan@example.com>",
        "=?utf-8?Q?Dan_=3Cboss=40example.com=3E?= <dan@example.com>",
        "=?utf-8?Q?x=0D=0ABcc:_evil4@attacker.example?= <dan@example.com>",
    ],
    ids=["address-as-name", "bracketed-address-in-name", "line-break-in-name"],
)
def test_encoded_display_name_never_assignee(db, settings, maildir, to):
    maildir.drop(raw_email(to))

    poll_mailbox_once(settings)

    task = Task.get()
    assert task.assigned_to == "dan@example.com"
    recipients = {delivery.recipient for delivery in Delivery.select()}
    assert recipients <= {"dan@example.com"}


def test_encoded_display_name_in_from(db, settings, maildir):
    sender = "=?utf-8?Q?=3Cboss=40example.com=3E?= <carol@example.com>"
    raw = raw_email("dan@example.com", sender=sender)

    maildir.drop(raw)
    poll_mailbox_once(settings)

    assert Task.get().creator_email == "carol@example.com"


def test_outlook_name_with_at_sign(db, settings, maildir):
    maildir.drop(raw_email("Dan dan.old@example.com <dan@example.com>"))

    poll_mailbox_once(settings)

    assert Task.get().assigned_to == "dan@example.com"


def test_encoded_empty_return_path_not_bounce():
    raw = b"Return-Path: =?utf-8?Q?=3C=3E?=\r\n" + make_email()

    verdict = classify(parse_message(raw))

    assert verdict.makes_task


def test_quoted_local_part_is_assignee(db, settings, maildir):
    maildir.drop(raw_email('"dan smith"@example.com'))

    poll_mailbox_once(settings)

    assert Task.get().assigned_to == '"dan smith"@example.com'


@pytest.mark.parametrize(
    ("to", "words"),
    [
        ("dan@[127.0.0.1]", "address literals"),
        ("x" * 300 + "@example.com", "longer than an email address"),
    ],
    ids=["address-literal", "long-local-part"],
)
def test_invalid_assignee_keeps_email(db, settings, maildir, caplog, to, words):
    maildir.drop(raw_email(to))

    with caplog.at_level(logging.WARNING, logger="core.mail.ingest"):
        poll_mailbox_once(settings)

    task = Task.get()
    assert task.assigned_to == ""
    assert task.creator_email == CREATOR
    row = MailMessage.get()
    assert row.outcome == "created"
    assert words in row.reason
    assert "without an assignee" in caplog.text


def test_undecodable_byte_never_assignee(db, settings, maildir):
    maildir.drop((CORPUS / "mail" / "malformed-8bit-from-to-subject.eml").read_bytes())

    poll_mailbox_once(settings)

    task = Task.get()
    assert task.assigned_to == ""
    assert "not valid UTF-8" in MailMessage.get().reason


def test_utf8_assignee_stored_with_ascii_domain(db, settings, maildir):
    maildir.drop((CORPUS / "mail" / "rfc6532-raw-utf8-headers.eml").read_bytes())

    poll_mailbox_once(settings)

    task = Task.get()
    assert task.assigned_to == "märy@xn--exmple-cua.net"
    assert task.creator_email == "jdöe@xn--mchine-bua.example"


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ('Dan <"Dan Smith"@Example.com>', '"dan smith"@example.com'),
        ('"a\\"b"@example.com', '"a\\"b"@example.com'),
        ("märy@exämple.net", "märy@xn--exmple-cua.net"),
        ("tracker@localhost", "tracker@localhost"),
    ],
)
def test_normalize_email_accepts(value, expected):
    assert normalize_email(value) == expected


@pytest.mark.parametrize(
    "value",
    ["dan@[127.0.0.1]", "a..b@example.com", "\ufffdgoogle@example.com", "a@b_c.com"],
)
def test_normalize_email_rejects(value):
    with pytest.raises(ValueError):
        normalize_email(value)
