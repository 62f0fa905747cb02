"""Gmail web links to a task's thread, shared by the add-on and Slack."""

from __future__ import annotations

import pytest

from core.links import gmail_thread_url

SEARCH = "https://mail.google.com/mail/u/0/#search/"
BY_ID = "https://mail.google.com/mail/u/0/#all/"


@pytest.mark.parametrize(
    ("thread_id", "latest_message_id", "expected"),
    [
        # A Message-ID search opens the thread in any mailbox holding it.
        (
            "18c2a5f0e1d2b3a4",
            "<jam-1@example.com>",
            SEARCH + "rfc822msgid%3Ajam-1%40example.com",
        ),
        (
            "<root@mail.example.com>",
            " <reply+1@mail.example.com> ",
            SEARCH + "rfc822msgid%3Areply%2B1%40mail.example.com",
        ),
        ("18c2a5f0e1d2b3a4", "", BY_ID + "18c2a5f0e1d2b3a4"),
        ("a/b c", "", BY_ID + "a%2Fb%20c"),
        # A Message-ID used as the thread key opens nothing by id.
        ("<root@mail.example.com>", "", None),
        ("", "", None),
    ],
)
def test_gmail_thread_url(thread_id, latest_message_id, expected):
    assert gmail_thread_url(thread_id, latest_message_id) == expected
