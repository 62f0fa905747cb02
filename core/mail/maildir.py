"""Read new mail from a local Maildir folder: the embedded default source."""

from __future__ import annotations

import logging
import mailbox
import os
import time
from collections.abc import Iterator
from pathlib import Path

from core.mail.mailbox import IncomingMessage, Mailbox

logger = logging.getLogger(__name__)

# Maildir "info" for a message that has been seen (the S flag).
SEEN_INFO = ":2,S"
# A file copied straight into new/ may still be growing: the Maildir protocol
# writes into tmp/ and renames into new/, but `cp` writes in place. A file
# modified less than this many seconds ago is left for the next poll.
SETTLE_SECONDS = 5


class MaildirMailbox(Mailbox):
    """Messages in ``new/`` are unread; a stored message moves to ``cur/``.

    Files may be dropped into ``new/`` by hand as well as by a mail delivery
    agent. A file modified in the last SETTLE_SECONDS is read by a later
    poll. A message is moved only after the database stores it. After a
    crash in between, the message is read again and the reader recognises
    it by its Message-ID.
    """

    source = "maildir"

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # Creates the folder with new/, cur/ and tmp/ when it does not exist.
        self.maildir = mailbox.Maildir(self.path, factory=None, create=True)
        # mailbox.Maildir leaves an existing folder as it is, and someone
        # who made only new/ by hand would have no cur/ to move mail into.
        for subfolder in ("new", "cur", "tmp"):
            (self.path / subfolder).mkdir(mode=0o700, exist_ok=True)

    def messages(self) -> Iterator[IncomingMessage]:
        for name in self._new_names():
            try:
                raw = (self.path / "new" / name).read_bytes()
            except FileNotFoundError:
                # Another poller moved it to cur/ since the folder was listed.
                continue
            yield IncomingMessage(source=self.source, source_id=name, raw=raw)

    def acknowledge(self, message: IncomingMessage) -> None:
        name = message.source_id
        target = name if ":2," in name else name + SEEN_INFO
        source = self.path / "new" / name
        try:
            os.replace(source, self.path / "cur" / target)
        except FileNotFoundError:
            if source.exists():
                raise
            logger.debug("maildir message %s was already moved to cur/", name)

    def _new_names(self) -> list[str]:
        """List the settled files in new/, oldest first, to read threads in order."""
        settled_before = (time.time() - SETTLE_SECONDS) * 1e9
        entries = []
        fresh = 0
        with os.scandir(self.path / "new") as scan:
            for entry in scan:
                if entry.name.startswith(".") or not entry.is_file():
                    continue
                modified = entry.stat().st_mtime_ns
                if modified > settled_before:
                    fresh += 1
                    continue
                entries.append((modified, entry.name))
        if fresh:
            logger.debug(
                "left %s files in %s/new for the next poll: modified in the last %s s",
                fresh,
                self.path,
                SETTLE_SECONDS,
            )
        return [name for _, name in sorted(entries)]
