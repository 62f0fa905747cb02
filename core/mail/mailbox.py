"""The interface every source of incoming mail implements."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterator
from dataclasses import dataclass


@dataclass(frozen=True)
class IncomingMessage:
    """One email as a source delivered it: raw bytes and where it came from."""

    source: str
    source_id: str
    raw: bytes
    # The provider's conversation id (Gmail threadId); empty for Maildir.
    thread_id: str = ""


class Mailbox(ABC):
    """A source of new mail read by ``poll_mailbox_once``.

    The poller takes messages from ``messages()`` in order, commits each one
    to the database, then calls ``acknowledge(message)``. After the last one
    it calls ``commit()``. A source must deliver again, on a later poll, any
    message that was not acknowledged, and must not move its cursor past a
    message before ``commit()``.
    """

    source: str

    @abstractmethod
    def messages(self) -> Iterator[IncomingMessage]:
        """Yield the new messages, oldest first."""

    def acknowledge(self, message: IncomingMessage) -> None:  # noqa: B027
        """Mark one message as stored; by default there is nothing to do."""

    def commit(self) -> None:  # noqa: B027
        """Advance the cursor past every message yielded in this poll."""
