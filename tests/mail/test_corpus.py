"""Every email of the real-mail corpus: its facts, its verdict, its task.

tests/corpus/mail/MANIFEST.tsv lists, for each file, what it exercises and
the facts a correct reader finds (sender, decoded subject, auto-reply,
bounce, attachments, reply headers). Where the manifest describes a value
instead of stating it, SENDERS and SUBJECTS below give the value.
"""

from __future__ import annotations

import csv
import re

import pytest

from core.mail import poll_mailbox_once
from core.mail.classify import AUTO_REPLY, BOUNCE, BULK, REPORT, TASK, classify
from core.mail.parse import parse_message
from core.models import MailMessage, Task
from tests.conftest import CORPUS

MAIL_CORPUS = CORPUS / "mail"
_KEYS = (
    "from|subject|is_auto_reply|is_bounce|has_attachment|in_reply_to|references"
    "|message_id|top_content_type|date_header|bytes"
)


def _manifest() -> list[dict[str, str]]:
    with open(MAIL_CORPUS / "MANIFEST.tsv", encoding="utf-8", newline="") as handle:
        rows = list(csv.DictReader(handle, delimiter="\t"))
    for row in rows:
        parts = re.split(rf"(?:^|; )({_KEYS})=", row["expected"])
        row.update(
            {
                f"expected_{key}": value
                for key, value in zip(parts[1::2], parts[2::2], strict=True)
            }
        )
    return rows


MANIFEST = _manifest()

SENDERS = {
    # The domain is stored in its IDNA ASCII form; the local part stays UTF-8.
    "rfc6532-raw-utf8-headers.eml": "jdöe@xn--mchine-bua.example",
    "outlook-italian-reply-chain-thread-index.eml": "jang.abcdef@xyzlinux12345678.it",
}
SUBJECTS = {
    # The raw bytes in this file are UTF-8 of Big5 text already misread as
    # Latin-1, so the reader keeps that mojibake, as the manifest notes.
    "big5-raw-8bit-subject-html-no-cte.eml": "4d8119¡@(¤j¸ÉªwÄÑ±M½æ) ¤j®a»¡\xad^»y",
    "raw-8bit-cyrillic-subject-no-mime.eml": "Узнай как зарабатывать от 1000$ в неделю!",
    "rfc6532-raw-utf8-headers.eml": "Säying Hello",
    "very-long-encoded-subject-200kb.eml": (
        "Die heiße Zypernsonne quälte Max und Victoria ja böse auf dem Weg bis zur Küste"
    ),
    "malformed-8bit-from-to-subject.eml": "´!",
    "malformed-to-leading-comma-empty-subject.eml": "",
}
# Mail that is neither an auto-reply nor a bounce but is still not a person
# writing to the tracker.
OTHER_MACHINES = {
    "arf-yahoo-feedback-report.eml": REPORT,
    "iso2022jp-mailinglist-reply-references.eml": BULK,
    "gb2312-8bit-body-encoded-display-name-outlook.eml": BULK,
    "mailinglist-list-id-yahoo-alternative.eml": BULK,
    "mailinglist-pgp-signed-announcement.eml": BULK,
    "malformed-date-html-in-reply-to-not-msgid.eml": BULK,
}


def expected_kind(row: dict[str, str]) -> str:
    if row["expected_is_bounce"].startswith("yes"):
        return BOUNCE
    if row["expected_is_auto_reply"].startswith("yes"):
        return AUTO_REPLY
    return OTHER_MACHINES.get(row["file"], TASK)


def expected_attachments(row: dict[str, str]) -> list[tuple[str, bool]]:
    found = re.findall(
        r"([\w.+-]+/[\w.+-]+)\((att|inline)\)", row["expected_has_attachment"]
    )
    return sorted((kind, where == "inline") for kind, where in found)


def test_manifest_lists_every_file():
    files = sorted(path.name for path in MAIL_CORPUS.glob("*.eml"))

    assert files == sorted(row["file"] for row in MANIFEST)
    assert len(files) == 59


@pytest.mark.parametrize("row", MANIFEST, ids=[row["file"] for row in MANIFEST])
def test_corpus_message_facts(row):
    raw = (MAIL_CORPUS / row["file"]).read_bytes()

    parsed = parse_message(raw)

    assert len(raw) == int(row["expected_bytes"])
    sender = SENDERS.get(row["file"], row["expected_from"]).lower()
    assert parsed.sender == sender
    subject = SUBJECTS.get(row["file"], row["expected_subject"])
    if row["file"] in (
        "big5-raw-8bit-subject-html-no-cte.eml",
        "very-long-encoded-subject-200kb.eml",
    ):
        assert parsed.subject.startswith(subject)
    else:
        assert parsed.subject == subject
    assert parsed.message.get_content_type() == row["expected_top_content_type"]
    found = sorted((item.content_type, item.inline) for item in parsed.attachments)
    assert found == expected_attachments(row)
    assert bool(parsed.in_reply_to) == row["expected_in_reply_to"].startswith("yes")
    assert bool(parsed.references) == row["expected_references"].startswith("yes")
    assert parsed.has_message_id == (
        not row["expected_message_id"].startswith("missing")
    )
    assert parsed.message_id.startswith("<")


@pytest.mark.parametrize("row", MANIFEST, ids=[row["file"] for row in MANIFEST])
def test_corpus_message_verdict(row):
    parsed = parse_message((MAIL_CORPUS / row["file"]).read_bytes())

    verdict = classify(parsed)

    assert verdict.kind == expected_kind(row), verdict.reason
    if verdict.kind != TASK:
        assert verdict.reason


def test_corpus_in_maildir_becomes_tasks(client, settings, maildir, as_creator):
    for path in MAIL_CORPUS.glob("*.eml"):
        maildir.drop(path.read_bytes(), path.name)
    names = {row["file"] for row in MANIFEST}

    handled = poll_mailbox_once(settings)

    assert handled == len(names)
    assert maildir.new() == []
    response = client.get("/tasks?limit=100", headers=as_creator)
    assert response.status_code == 200
    listed = response.get_json()["tasks"]
    task_rows = [row for row in MANIFEST if expected_kind(row) == TASK]
    assert len(listed) == len(task_rows)
    assert Task.select().count() == len(task_rows)
    creators = sorted(item["creator_email"] for item in listed)
    assert creators == sorted(
        SENDERS.get(row["file"], row["expected_from"]).lower() for row in task_rows
    )
    outcomes = {row.outcome for row in MailMessage.select()}
    assert outcomes == {"created", "ignored"}
    ignored = MailMessage.select().where(MailMessage.outcome == "ignored")
    assert ignored.count() == len(names) - len(task_rows)
    assert all(row.reason for row in ignored)


def test_corpus_second_poll_changes_nothing(db, settings, maildir):
    for path in sorted(MAIL_CORPUS.glob("*.eml")):
        maildir.drop(path.read_bytes(), path.name)
    poll_mailbox_once(settings)
    before = [(t.id, t.version) for t in Task.select().order_by(Task.id)]
    for path in sorted(MAIL_CORPUS.glob("*.eml")):
        maildir.drop(path.read_bytes(), "again-" + path.name)

    poll_mailbox_once(settings)

    assert [(t.id, t.version) for t in Task.select().order_by(Task.id)] == before
    assert MailMessage.select().count() == len(MANIFEST)
    assert maildir.new() == []
