"""Benchmark the mail reader: ingest a Maildir into SQLite beside parse-only.

Writes N synthetic emails (default 10,000: new threads, replies joined by
In-Reply-To/References, HTML and plain text, some attachments) into a fresh
Maildir, then in the same run, on five chunks of the mail in turn:

1. parses every file of the chunk with the ``email`` package alone
   (``BytesParser`` with ``policy.default``), the floor any reader pays;
2. ingests the same files with ``poll_mailbox_once`` into a fresh SQLite
   database: parse, classify, thread, create or update tasks, move to cur/.

It prints both rates, their ratio, and the resident memory sampled during the
ingest, so a leak shows as growth between the first and last samples.

    python -m bench.ingest                # 10,000 messages
    python -m bench.ingest --messages 2000
"""

from __future__ import annotations

import argparse
import logging
import os
import shutil
import tempfile
import threading
import time
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser
from pathlib import Path

REPLIES_PER_THREAD = 4
SAMPLE_SECONDS = 0.5
CHUNKS = 5


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=10_000, help="emails to ingest")
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)

    workdir = Path(tempfile.mkdtemp(prefix="threadtask-bench-"))
    try:
        run(workdir, args.messages)
    finally:
        if args.keep:
            print(f"kept {workdir}")
        else:
            shutil.rmtree(workdir)


def run(workdir: Path, count: int) -> None:
    from core.config import Settings, use_settings
    from core.db import database, migrate_database, open_database
    from core.mail import poll_mailbox_once
    from core.mail.maildir import MaildirMailbox
    from core.models import MailMessage, Task

    settings = use_settings(
        Settings(
            _env_file=None,  # type: ignore[call-arg]
            data_dir=workdir / "data",
            mailbox_address="tracker@example.com",
        )
    )
    maildir = MaildirMailbox(settings.resolved_maildir)
    staging = workdir / "staging"
    staging.mkdir()
    total_bytes = write_messages(staging, count)
    files = sorted(staging.iterdir())

    open_database(settings.resolved_database_url)
    with database.connection_context():
        migrate_database()
    # Parse-only and ingest take turns on chunks of the mailbox, so a drift
    # in the machine's speed during the run weighs on both alike.
    parse_seconds = ingest_seconds = 0.0
    handled = 0
    chunk_ratios = []
    size = -(-len(files) // CHUNKS)
    sampler = RssSampler()
    sampler.start()
    for start in range(0, len(files), size):
        chunk = [
            path.rename(maildir.path / "new" / path.name)
            for path in files[start : start + size]
        ]
        parse = time_parse_only(chunk)
        started = time.perf_counter()
        handled_now = poll_mailbox_once(settings)
        ingest = time.perf_counter() - started
        parse_seconds += parse
        ingest_seconds += ingest
        handled += handled_now
        chunk_ratios.append(parse / ingest * handled_now / len(chunk))
    sampler.stop()

    with database.connection_context():
        tasks = Task.select().count()
        outcomes = {
            outcome: MailMessage.select().where(MailMessage.outcome == outcome).count()
            for outcome in ("created", "updated", "ignored", "quarantined")
        }

    parse_rate = count / parse_seconds
    ingest_rate = handled / ingest_seconds
    print(
        f"messages:            {count} ({total_bytes / 1e6:.1f} MB), handled {handled}"
    )
    print(f"tasks created:       {tasks}; outcomes {outcomes}")
    print(f"parse only (email):  {parse_rate:8.0f} messages/s ({parse_seconds:.2f} s)")
    print(
        f"ingest into SQLite:  {ingest_rate:8.0f} messages/s ({ingest_seconds:.2f} s)"
    )
    print(f"ingest / parse-only: {ingest_rate / parse_rate:8.0%} (goal: at least 40%)")
    print(f"by chunk:            {' '.join(f'{ratio:.0%}' for ratio in chunk_ratios)}")
    print(f"resident memory:     {sampler.describe()}")


def time_parse_only(files: list[Path]) -> float:
    parser = BytesParser(policy=policy.default)
    started = time.perf_counter()
    for path in files:
        parser.parsebytes(path.read_bytes())
    return time.perf_counter() - started


def write_messages(directory: Path, count: int) -> int:
    """Write ``count`` emails: threads of one question and a few replies."""
    total = 0
    thread_root = ""
    for number in range(count):
        position = number % (REPLIES_PER_THREAD + 1)
        message_id = f"<bench-{number}@client.example.com>"
        if position == 0:
            thread_root = message_id
        raw = build_message(number, message_id, thread_root if position else "")
        # Maildir names start with a time so files sort in delivery order.
        name = f"{1_700_000_000 + number}.M{number}P{os.getpid()}.bench"
        path = directory / name
        path.write_bytes(raw)
        os.utime(path, ns=(number * 1000, number * 1000))
        total += len(raw)
    return total


def build_message(number: int, message_id: str, reply_to: str) -> bytes:
    message = EmailMessage()
    people = ["carol", "alex", "dana", "lee", "sam"]
    message["From"] = f"{people[number % 5].title()} <{people[number % 5]}@example.com>"
    message["To"] = f"{people[(number + 1) % 5]}@example.com, tracker@example.com"
    message["Subject"] = (
        "Re: " if reply_to else ""
    ) + f"Printer {number // 5} is jammed"
    message["Date"] = "Tue, 01 Dec 2026 09:00:00 +0000"
    message["Message-ID"] = message_id
    if reply_to:
        message["In-Reply-To"] = reply_to
        message["References"] = reply_to
    text = f"Message {number}: the printer on floor {number % 7} jams again.\n" * 20
    message.set_content(text)
    if number % 2:
        message.add_alternative(
            f"<p>{text.replace(chr(10), '<br>')}</p>", subtype="html"
        )
    if number % 10 == 3:
        message.add_attachment(
            b"%PDF-1.4\n" + bytes(4000),
            maintype="application",
            subtype="pdf",
            filename="report.pdf",
        )
    return message.as_bytes()


class RssSampler:
    """Sample this process's resident memory from /proc in a thread."""

    def __init__(self) -> None:
        self.samples: list[float] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._page = os.sysconf("SC_PAGE_SIZE")

    def start(self) -> None:
        self._sample()
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()
        self._sample()

    def _run(self) -> None:
        while not self._stop.wait(SAMPLE_SECONDS):
            self._sample()

    def _sample(self) -> None:
        with open("/proc/self/statm") as handle:
            resident_pages = int(handle.read().split()[1])
        self.samples.append(resident_pages * self._page / 1e6)

    def describe(self) -> str:
        """Summarise the samples: the value at each tenth of the run, and the max."""
        count = len(self.samples)
        tenths = [
            self.samples[min(count - 1, count * step // 10)] for step in range(11)
        ]
        points = " ".join(f"{value:.0f}" for value in tenths)
        return (
            f"{points} MB at each tenth of the ingest; max {max(self.samples):.1f} MB"
        )


if __name__ == "__main__":
    main()
