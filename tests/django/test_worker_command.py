"""manage.py headrace_worker and friends, as subprocesses on the committed test database
(SQLite: a file, HEADRACE_TEST_SQLITE_FILE; PostgreSQL: the test database)."""

from __future__ import annotations

import json
import signal
import time
from typing import Any

import pytest
from conftest import manage
from django.db import connection, transaction
from shop.models import Order

import headrace.django as hr
from headrace.django.testing import outbox_items

pytestmark = pytest.mark.usefixtures("file_database", "clean_outbox")


def wait_for(predicate: Any, timeout: float = 30.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def statuses() -> dict[str, int]:
    counts: dict[str, int] = {}
    for item in outbox_items():
        counts[item.status] = counts.get(item.status, 0) + 1
    return counts


def test_burst_processes_committed_items_and_exits() -> None:
    with transaction.atomic():
        orders = [Order.objects.create(number=f"B-{n}") for n in range(20)]
        for order in orders:
            hr.enqueue("shop.order_placed", {"order_id": order.pk})
    proc = manage("headrace_worker", "--burst", "--concurrency", "2")
    out, _ = proc.communicate(timeout=120)
    assert proc.returncode == 0, out
    assert "processed 20: completed 20" in out
    assert Order.objects.filter(notified=True).count() == 20
    assert statuses() == {"completed": 20}


def test_topics_and_exclude_topics_filter_the_work() -> None:
    order = Order.objects.create(number="F-1")
    hr.enqueue("shop.order_placed", {"order_id": order.pk})
    hr.enqueue("tasks.default", {"task": "shop.tasks.add", "args": [1, 2], "kwargs": {}})
    proc = manage("headrace_worker", "--burst", "--exclude-topics", "tasks.default,tasks.mail")
    out, _ = proc.communicate(timeout=120)
    assert proc.returncode == 0, out
    by_topic = {i.topic: i.status for i in outbox_items()}
    assert by_topic == {"shop.order_placed": "completed", "tasks.default": "pending"}
    proc = manage("headrace_worker", "--burst", "--topics", "tasks.default")
    out, _ = proc.communicate(timeout=120)
    assert {i.topic: i.status for i in outbox_items()}["tasks.default"] == "completed", out


def test_tasks_run_in_the_worker_and_their_results_are_readable_here() -> None:
    from shop import tasks

    result = tasks.add.enqueue(20, 22)
    proc = manage("headrace_worker", "--burst")
    out, _ = proc.communicate(timeout=120)
    assert proc.returncode == 0, out
    result.refresh()
    assert str(result.status) == "SUCCESSFUL" and result.return_value == 42
    assert len(result.worker_ids) == 1 and result.worker_ids[0]


def test_sigterm_finishes_in_flight_work_and_stops_within_a_lease() -> None:
    proc = manage("headrace_worker", env={"PYTHONUNBUFFERED": "1"})
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert "headrace worker" in line, line
        order = Order.objects.create(number="S-1")
        hr.enqueue("shop.order_placed", {"order_id": order.pk})
        wait_for(lambda: statuses() == {"completed": 1}, what="the running worker to process the item")
        started = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=30)
        stopped_in = time.monotonic() - started
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, out
    assert stopped_in < 300  # the lease
    assert "processed" in out


def test_healthcheck_reports_migrations_heartbeats_and_pending_age() -> None:
    proc = manage("headrace_healthcheck", "--json", "--no-worker")
    out, _ = proc.communicate(timeout=60)
    report = json.loads(out.strip().splitlines()[-1])
    assert proc.returncode == 0 and report["database"] and report["unapplied_migrations"] == []
    proc = manage("headrace_healthcheck", "--heartbeat-max-age", "0.000001")
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 1 and "no worker heartbeat in the last 1e-06s" in out
    burst = manage("headrace_worker", "--burst", "--worker-id", "health-probe")  # beats once
    burst.communicate(timeout=120)
    proc = manage("headrace_healthcheck", "--json")
    out, _ = proc.communicate(timeout=60)
    report = json.loads(out.strip().splitlines()[-1])
    assert proc.returncode == 0, out
    assert report["workers"]["health-probe"] < 60


def test_outbox_command_stats_list_requeue_purge() -> None:
    hr.enqueue("cmd.topic", {"n": 1}, max_attempts=1)
    proc = manage("headrace_worker", "--burst")  # no handler: dead-lettered
    proc.communicate(timeout=120)
    (item,) = outbox_items()
    assert item.status == "failed"
    out, _ = manage("headrace_outbox", "stats", "--json").communicate(timeout=60)
    assert json.loads(out.strip().splitlines()[-1])["failed"] == 1
    out, _ = manage("headrace_outbox", "list", "--status", "failed").communicate(timeout=60)
    assert "cmd.topic" in out and "no handler" in out
    out, _ = manage("headrace_outbox", "requeue", "--failed").communicate(timeout=60)
    assert "requeued 1" in out
    assert outbox_items()[0].status == "pending"
    out, _ = manage("headrace_outbox", "purge", "--older-than", "0", "--status", "failed").communicate(timeout=60)
    assert "purged 0" in out


def test_connections_do_not_grow_over_a_thousand_handler_calls() -> None:
    if connection.vendor != "postgresql":
        pytest.skip("counts PostgreSQL backends")
    with transaction.atomic():
        order = Order.objects.create(number="C-1")
        hr.enqueue_many([{"topic": "shop.order_placed", "payload": {"order_id": order.pk}} for _ in range(1000)])

    def backends() -> int:
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT COUNT(*) FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()"
            )
            return int(cursor.fetchone()[0])

    proc = manage("headrace_worker", "--concurrency", "4", "--batch-size", "50", env={"PYTHONUNBUFFERED": "1"})
    try:
        peak = 0
        samples = []
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline and statuses().get("completed", 0) < 1000:
            count = backends()
            samples.append(count)
            peak = max(peak, count)
            time.sleep(0.05)
        assert statuses() == {"completed": 1000}
        after = backends()
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    # The core's pool (8) + state (<= 8) + at most one Django connection per handler thread.
    assert peak <= 8 + 8 + 4 + 2, (peak, samples[-20:])
    assert after <= peak


def test_due_bridges_run_inside_the_worker_once() -> None:
    env = {"HEADRACE_TEST_BRIDGES": "shop.bridges.OrderImportBridge"}
    for _ in range(2):  # the second run finds the bridge not yet due
        proc = manage("headrace_worker", "--burst", env=env)
        out, _ = proc.communicate(timeout=120)
        assert proc.returncode == 0, out
    assert Order.objects.filter(number="imported").count() == 1
    out, _ = manage("headrace_run_due", env=env).communicate(timeout=60)
    assert Order.objects.filter(number="imported").count() == 1, out


def test_policies_run_inside_the_worker_and_their_chunks_reach_the_outbox() -> None:
    policies = {
        "policies": {"export": {"config": {"package": "shop.policy_backend", "count": 3}, "scope": {"prefix": "order"}}}
    }
    env = {"PYTHONUNBUFFERED": "1", "HEADRACE_TEST_POLICIES": json.dumps(policies)}
    proc = manage("headrace_worker", env=env)
    try:
        assert proc.stdout is not None
        assert "headrace worker" in proc.stdout.readline()
        # Settled (no handler for the topic: dead-lettered) once the worker's loop, and so its
        # signal handling, is running.
        wait_for(
            lambda: any(i.topic == "headrace.entities" and i.status == "failed" for i in outbox_items()),
            what="the policy's chunk in the outbox, settled by the worker",
        )
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=60)
        assert proc.returncode == 0, out
    finally:
        if proc.poll() is None:
            proc.kill()
    (chunk,) = [i for i in outbox_items() if i.topic == "headrace.entities"]
    assert [e["name"] for e in chunk.payload["entities"]] == ["order-0", "order-1", "order-2"]
    assert chunk.payload["metadata"]["policy_name"] == "export"
    assert chunk.payload["metadata"]["worker_backend"] == "order-export"


def test_the_worker_survives_losing_its_database_connections() -> None:
    if connection.vendor != "postgresql":
        pytest.skip("drops PostgreSQL backends")
    proc = manage("headrace_worker", env={"PYTHONUNBUFFERED": "1"})
    try:
        assert proc.stdout is not None
        assert "headrace worker" in proc.stdout.readline()
        first = Order.objects.create(number="before")
        hr.enqueue("shop.order_placed", {"order_id": first.pk})
        wait_for(lambda: statuses() == {"completed": 1}, what="the first item")
        with connection.cursor() as cursor:  # what a server restart does to the worker
            cursor.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE datname = current_database() AND pid <> pg_backend_pid()"
            )
        second = Order.objects.create(number="after")
        hr.enqueue("shop.order_placed", {"order_id": second.pk})
        wait_for(lambda: statuses() == {"completed": 2}, timeout=60, what="an item after the connections died")
        assert Order.objects.get(pk=second.pk).notified
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=60)
        assert proc.returncode == 0, out
    finally:
        if proc.poll() is None:
            proc.kill()


def test_a_second_signal_exits_at_once() -> None:
    hr.enqueue("shop.slow", {"seconds": 30})
    proc = manage("headrace_worker", env={"PYTHONUNBUFFERED": "1"})
    try:
        assert proc.stdout is not None
        assert "headrace worker" in proc.stdout.readline()
        wait_for(lambda: statuses() == {"processing": 1}, what="the slow item to start")
        proc.send_signal(signal.SIGTERM)
        time.sleep(0.5)
        assert proc.poll() is None  # the first signal waits for the in-flight item
        started = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=20)
        assert time.monotonic() - started < 15
    finally:
        if proc.poll() is None:
            proc.kill()
    assert statuses() == {"processing": 1}  # its lease expires; the reaper gives it back


def test_reload_restarts_the_worker_when_code_changes() -> None:
    import os
    from pathlib import Path

    proc = manage("headrace_worker", "--reload", env={"PYTHONUNBUFFERED": "1"})
    watched = Path(__file__).resolve().parent / "shop" / "handlers.py"
    try:
        assert proc.stdout is not None
        assert "headrace worker" in proc.stdout.readline()
        time.sleep(1.5)  # the reloader takes its first snapshot of mtimes
        stat = watched.stat()
        os.utime(watched, (stat.st_atime, stat.st_mtime + 5))
        try:
            lines = []
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                line = proc.stdout.readline()
                lines.append(line)
                if "headrace worker" in line:
                    break
            assert any("headrace worker" in line for line in lines), lines
        finally:
            os.utime(watched, (stat.st_atime, stat.st_mtime))
    finally:
        proc.terminate()
        try:
            proc.communicate(timeout=20)
        except Exception:
            proc.kill()
