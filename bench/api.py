"""Benchmark the REST API under gunicorn against a bare Flask endpoint.

    python -m bench.api [--tasks 100000] [--requests 3000] [--concurrency 4]

Seeds SQLite with tasks, starts gunicorn (one sync worker) on 127.0.0.1,
and drives it from a separate load-generator process. Reports requests/s
and p50/p99 latency per endpoint beside the bare endpoint measured in the
same run, and the worker's resident memory at 1,000 and at --tasks tasks.
"""

from __future__ import annotations

import argparse
import http.client
import json
import multiprocessing
import os
import random
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
EMAIL = "bench@example.com"
ASSIGNEES = [f"person{i}@example.com" for i in range(200)]
BODY = "<p>" + "body " * 40 + "</p>"


def seed(start: int, stop: int) -> None:
    """Insert tasks with ids start+1..stop, in batches, in one transaction each."""
    import peewee as pw

    from core.db import database
    from core.models import Task, TaskBody
    from core.timeutil import utcnow

    rng = random.Random(start)
    now = utcnow()
    batch = []
    with database.connection_context():
        for number in range(start + 1, stop + 1):
            batch.append(
                {
                    "creator_email": "creator@example.com",
                    "assigned_to": rng.choice(ASSIGNEES),
                    "subject": f"Task {number}",
                    "thread_id": f"thread-{number}",
                    "latest_message_id": f"<m{number}@example.com>",
                    "status": rng.choices(["open", "fixed", "closed"], [50, 10, 40])[0],
                    "criticality": rng.choices(
                        ["low", "medium", "high", "critical"], [30, 50, 19, 1]
                    )[0],
                    "created_at": now,
                    "modified_at": now,
                    "next_reminder_at": now,
                }
            )
            if len(batch) == 5000:
                with database.atomic():
                    Task.insert_many(batch).execute()
                batch = []
        if batch:
            with database.atomic():
                Task.insert_many(batch).execute()
        # Every task gets a small HTML body, as one made from an email has.
        without_body = (
            Task.select(Task.id, pw.Value(BODY))
            .join(TaskBody, pw.JOIN.LEFT_OUTER)
            .where(TaskBody.task.is_null())
        )
        with database.atomic():
            TaskBody.insert_from(without_body, [TaskBody.task, TaskBody.html]).execute()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for pid {pid}")


def worker_pid(master_pid: int) -> int:
    children = (
        Path(f"/proc/{master_pid}/task/{master_pid}/children").read_text().split()
    )
    return int(children[0])


def _load(args: tuple) -> list[float]:
    port, method, paths, body, token, count = args
    latencies = []
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    for index in range(count):
        path = paths[index % len(paths)]
        payload = body(index) if callable(body) else body
        started = time.perf_counter()
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        conn.request(method, path, body=payload, headers=headers)
        response = conn.getresponse()
        response.read()
        conn.close()
        latencies.append(time.perf_counter() - started)
        if response.status >= 400:
            raise RuntimeError(f"{method} {path} returned {response.status}")
    return latencies


def _body_for(index: int) -> str:
    return json.dumps({"criticality": ["low", "high"][index % 2]})


def drive(port, method, paths, body, token, total, concurrency) -> dict:
    """Send ``total`` requests from ``concurrency`` processes; return figures."""
    per = total // concurrency
    jobs = [
        (port, method, paths[i:] + paths[:i], body, token, per)
        for i in range(concurrency)
    ]
    started = time.perf_counter()
    with multiprocessing.get_context("spawn").Pool(concurrency) as pool:
        parts = pool.map(_load, jobs)
    elapsed = time.perf_counter() - started
    latencies = sorted(x for part in parts for x in part)
    return {
        "rps": len(latencies) / elapsed,
        "p50_ms": statistics.median(latencies) * 1000,
        "p99_ms": latencies[int(len(latencies) * 0.99) - 1] * 1000,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=100_000)
    parser.add_argument("--requests", type=int, default=3000)
    parser.add_argument("--concurrency", type=int, default=4)
    options = parser.parse_args()

    data_dir = Path(tempfile.mkdtemp(prefix="threadtask-bench-"))
    env = {
        **os.environ,
        "DATA_DIR": str(data_dir),
        "DATABASE_URL": "",
        "LOG_LEVEL": "WARNING",
        "PYTHONPATH": str(ROOT),
    }
    os.environ.update(env)

    from core import auth
    from core.config import load_settings, use_settings
    from core.db import database, migrate_database, open_database, optimize_database

    settings = use_settings(load_settings())
    open_database(settings.resolved_database_url)
    with database.connection_context():
        migrate_database()
        _, token = auth.create_token(EMAIL)
    seed(0, 1000)

    port = free_port()
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "gunicorn",
            "--no-control-socket",
            "--workers",
            "1",
            "--bind",
            f"127.0.0.1:{port}",
            "--log-level",
            "warning",
            "bench.api_app:app",
        ],
        cwd=ROOT,
        env=env,
    )
    try:
        _wait_for(port)
        rng = random.Random(7)
        query = (
            "/tasks?q="
            + "criticality:critical%20AND%20status:open%20AND%20assigned_to:person7@example.com"
        )

        def run_all(label: str, task_count: int) -> dict:
            ids = [f"/tasks/{rng.randint(1, task_count)}" for _ in range(500)]

            def measure(method, paths, body=None, share=1.0):
                count = int(options.requests * share)
                return drive(
                    port, method, paths, body, token, count, options.concurrency
                )

            # Warm the worker up (imports, connection pool, SQLite's page cache)
            # so the first endpoint measured is not charged for it.
            for paths in (["/bench/bare"], ids, [query]):
                measure("GET", paths, share=0.1)
            bare_before = measure("GET", ["/bench/bare"])
            figures = {
                "get_task": measure("GET", ids),
                "list_filtered": measure("GET", [query]),
                "put_task": measure("PUT", ids, _body_for, share=0.5),
            }
            bare_after = measure("GET", ["/bench/bare"])
            # The baseline brackets the endpoints, so drift in the machine's
            # speed during the run weighs on both sides alike.
            figures["bare"] = {
                "rps": (bare_before["rps"] + bare_after["rps"]) / 2,
                "p50_ms": (bare_before["p50_ms"] + bare_after["p50_ms"]) / 2,
                "p99_ms": max(bare_before["p99_ms"], bare_after["p99_ms"]),
            }
            figures["worker_rss_kib"] = rss_kib(worker_pid(server.pid))
            print(f"\n{label}: {task_count} tasks")
            print(
                f"bare endpoint before and after: {bare_before['rps']:.0f} and "
                f"{bare_after['rps']:.0f} req/s"
            )
            _report(figures)
            return figures

        small = run_all("small table", 1000)
        seed(1000, options.tasks)
        # The clock refreshes the planner's statistics periodically; do it
        # now so the large table is measured as it runs in service.
        with database.connection_context():
            optimize_database()
        large = run_all("large table", options.tasks)
        growth = large["worker_rss_kib"] / small["worker_rss_kib"]
        print(
            f"\nworker RSS: {small['worker_rss_kib']} KiB at 1000 tasks, "
            f"{large['worker_rss_kib']} KiB at {options.tasks} tasks "
            f"(x{growth:.2f})"
        )
    finally:
        server.terminate()
        server.wait(timeout=30)


def _wait_for(port: int) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.2)
    raise RuntimeError(f"gunicorn did not listen on port {port} within 30 s")


def _report(figures: dict) -> None:
    bare = figures["bare"]["rps"]
    print(f"{'endpoint':<16}{'req/s':>9}{'p50 ms':>9}{'p99 ms':>9}{'vs bare':>9}")
    for name in ("bare", "get_task", "list_filtered", "put_task"):
        row = figures[name]
        print(
            f"{name:<16}{row['rps']:>9.0f}{row['p50_ms']:>9.2f}{row['p99_ms']:>9.2f}"
            f"{row['rps'] / bare:>9.0%}"
        )


if __name__ == "__main__":
    main()
