"""Django integration benchmark: ratios against peers run side by side in one process.

1. ``headrace.django.enqueue`` inside ``atomic`` vs ``Model.objects.create()`` of a comparable
   row (topic, JSON payload, priority, timestamp) on the same connection — many per transaction
   and one per transaction (the commit, and on PostgreSQL the notify, included) — and
   ``enqueue_many`` vs ``bulk_create`` of the same rows (one statement each).
2. ``HeadraceTaskBackend.enqueue`` vs django-tasks-db's ``DatabaseBackend.enqueue`` (when
   django-tasks-db is installed).
3. The worker command's worker (connection hygiene around each handler) vs a plain
   ``OutboxWorker`` with the same handler, draining the same number of items.

Usage: python benches/bench_django.py [--pg URL] [--n 2000] [--worker-n 20000]
(targets: enqueue <= 1.5x create; tasks enqueue < 1x django-tasks-db; worker within 20 %).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests" / "django"))


def configure(pg: str | None) -> None:
    import django
    from django.conf import settings

    if pg:
        parts = urlsplit(pg)
        database = {
            "ENGINE": "django.db.backends.postgresql",
            "NAME": parts.path.lstrip("/"),
            "USER": unquote(parts.username or ""),
            "PASSWORD": unquote(parts.password or ""),
            "HOST": parts.hostname or "",
            "PORT": str(parts.port or ""),
        }
    else:
        database = {
            "ENGINE": "django.db.backends.sqlite3",
            "NAME": os.path.join(tempfile.mkdtemp(), "bench.sqlite3"),
            "OPTIONS": {"init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;"},
        }
    apps = ["django.contrib.contenttypes", "django.contrib.auth", "headrace.django", "shop"]
    tasks_db = False
    try:
        import django_tasks_db  # noqa: F401

        apps.append("django_tasks_db")
        tasks_db = True
    except ImportError:
        pass
    queues = ["default", "mail"]  # the test project's tasks (tests/django/shop/tasks.py)
    tasks: dict[str, dict[str, Any]] = {
        "default": {"BACKEND": "headrace.django.tasks.HeadraceTaskBackend", "QUEUES": queues}
    }
    if tasks_db:
        tasks["db"] = {"BACKEND": "django_tasks_db.DatabaseBackend", "QUEUES": queues}
    settings.configure(
        DEBUG=False,
        USE_TZ=True,
        INSTALLED_APPS=apps,
        DATABASES={"default": database},
        DEFAULT_AUTO_FIELD="django.db.models.BigAutoField",
        HEADRACE={"STATE": False, "POLL_INTERVAL": 0.05},
        TASKS=tasks,
        SECRET_KEY="bench",
    )
    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)


def best(runs: list[float]) -> float:
    return min(runs)


def timed(fn: Any, repeat: int = 5) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def bench_enqueue(n: int) -> dict[str, float]:
    from django.db import transaction
    from django.utils import timezone
    from shop.models import Note

    import headrace.django as hr

    payload = {"order_id": 12345, "email": "a@example.com", "items": [1, 2, 3]}

    def enqueue_many_in_one() -> None:
        with transaction.atomic():
            for _ in range(n):
                hr.enqueue("shop.order_placed", payload, priority=1)

    def create_many_in_one() -> None:
        with transaction.atomic():
            for _ in range(n):
                Note.objects.create(topic="shop.order_placed", payload=payload, priority=1)

    def enqueue_each_committed() -> None:
        for _ in range(n // 10):
            with transaction.atomic():
                hr.enqueue("shop.order_placed", payload, priority=1)

    def create_each_committed() -> None:
        for _ in range(n // 10):
            with transaction.atomic():
                Note.objects.create(topic="shop.order_placed", payload=payload, priority=1, created_at=timezone.now())

    def enqueue_batch() -> None:
        with transaction.atomic():
            hr.enqueue_many([{"topic": "shop.order_placed", "payload": payload, "priority": 1}] * n)

    def bulk_create() -> None:
        with transaction.atomic():
            now = timezone.now()
            Note.objects.bulk_create(
                [Note(topic="shop.order_placed", payload=payload, priority=1, created_at=now) for _ in range(n)]
            )

    results = {}
    for name, a, b in (
        ("enqueue / create, one transaction", enqueue_many_in_one, create_many_in_one),
        ("enqueue / create, a transaction each", enqueue_each_committed, create_each_committed),
        ("enqueue_many / bulk_create, one batch", enqueue_batch, bulk_create),
    ):
        a(), b()  # warm up
        ta, tb = [], []
        for _ in range(5):  # A B A B
            ta.append(timed(a, 1))
            tb.append(timed(b, 1))
        results[name] = statistics.median(ta) / statistics.median(tb)
        ops = n // 10 if "each" in name else n
        print(
            f"{name:<45} {statistics.median(ta) / ops * 1e6:8.1f} µs vs "
            f"{statistics.median(tb) / ops * 1e6:8.1f} µs  ratio {results[name]:.2f}"
        )
    return results


def bench_tasks(n: int) -> dict[str, float]:
    from django.conf import settings
    from django.db import transaction
    from shop import tasks

    if "db" not in settings.TASKS:
        print("tasks enqueue: django-tasks-db not installed, skipped")
        return {}
    ours = tasks.add
    theirs = tasks.add.using(backend="db")

    def run(task: Any) -> None:
        with transaction.atomic():
            for i in range(n):
                task.enqueue(i, 1)

    run(ours), run(theirs)
    ta, tb = [], []
    for _ in range(5):
        ta.append(timed(lambda: run(ours), 1))
        tb.append(timed(lambda: run(theirs), 1))
    ratio = statistics.median(ta) / statistics.median(tb)
    print(
        f"{'tasks enqueue / django-tasks-db enqueue':<45} {statistics.median(ta) / n * 1e6:8.1f} µs vs "
        f"{statistics.median(tb) / n * 1e6:8.1f} µs  ratio {ratio:.2f}"
    )
    return {"tasks": ratio}


def bench_worker(n: int) -> dict[str, float]:
    from django.db import connection

    import headrace.django as hr
    from headrace.django import db
    from headrace.django.worker import DjangoWorker, WorkerOptions
    from headrace.worker import OutboxWorker

    def noop(item: Any) -> None:
        return None

    def fill() -> None:
        for start in range(0, n, 1000):
            hr.enqueue_many([{"topic": "bench.noop", "payload": {"n": i}} for i in range(start, min(n, start + 1000))])

    def empty() -> None:
        with connection.cursor() as cursor:
            cursor.execute("DELETE FROM headrace_outbox")

    def plain() -> float:
        store = db.open_store()
        worker = OutboxWorker(store, {"bench.noop": noop}, batch_size=100)
        start = time.perf_counter()
        report = worker.run_until_empty()
        elapsed = time.perf_counter() - start
        assert report.completed == n, report
        return elapsed

    def command() -> float:
        from django.test import override_settings

        with override_settings(HEADRACE={"STATE": False, "HANDLERS": {"bench.noop": "bench_handlers.noop"}}):
            worker = DjangoWorker(WorkerOptions(policies=False, bridges=False))
            start = time.perf_counter()
            report = worker.run_burst()
            elapsed = time.perf_counter() - start
        assert report.completed == n, report
        return elapsed

    plain_times, command_times = [], []
    for _ in range(3):
        for runner, times in ((plain, plain_times), (command, command_times)):
            empty()
            fill()
            times.append(runner())
    ratio = statistics.median(plain_times) / statistics.median(command_times)
    print(
        f"{'worker command / plain OutboxWorker (throughput)':<45} {n / statistics.median(command_times):8.0f}/s vs "
        f"{n / statistics.median(plain_times):8.0f}/s  ratio {ratio:.2f}"
    )
    return {"worker": ratio}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--pg", help="PostgreSQL URL (default: a SQLite file)")
    parser.add_argument("--n", type=int, default=2000)
    parser.add_argument("--worker-n", type=int, default=20000)
    args = parser.parse_args()
    bench_dir = Path(tempfile.mkdtemp())
    (bench_dir / "bench_handlers.py").write_text("def noop(item):\n    return None\n")
    sys.path.insert(0, str(bench_dir))
    configure(args.pg)
    print(f"engine: {'postgresql' if args.pg else 'sqlite'}")
    bench_enqueue(args.n)
    bench_tasks(args.n)
    bench_worker(args.worker_n)


if __name__ == "__main__":
    main()
