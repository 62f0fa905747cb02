"""Links into the Gmail web app, the same in the add-on's cards and in Slack."""

from __future__ import annotations

from urllib.parse import quote

from core.outbound import is_gmail_thread_id

GMAIL_WEB_URL = "https://mail.google.com/"
# "u/0" is the first Google account signed in to the browser.
_MAILBOX_VIEW = GMAIL_WEB_URL + "mail/u/0/"


def gmail_thread_url(thread_id: str, latest_message_id: str) -> str | None:
    """Return a Gmail web link that opens a task's thread, or None.

    Thread ids belong to one mailbox, the team's, so a colleague's own Gmail
    cannot open a thread by the team mailbox's id. A search for the latest
    Message-ID finds the thread in any mailbox that contains the message, and it
    works for tasks the Maildir reader stored too. The thread id is the
    fallback when no Message-ID is known; a Message-ID used as a thread key
    (Maildir) gives no link at all.
    """
    message_id = (latest_message_id or "").strip().strip("<>")
    if message_id:
        query = quote(f"rfc822msgid:{message_id}", safe="")
        return f"{_MAILBOX_VIEW}#search/{query}"
    if is_gmail_thread_id(thread_id or ""):
        return f"{_MAILBOX_VIEW}#all/{quote(thread_id, safe='')}"
    return None
