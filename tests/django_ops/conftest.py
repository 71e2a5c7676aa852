"""Fixtures of the ops tests: outbox items in every operational state, made through the core's
own statements on Django's connection (enqueue, claim, settle), and staff users."""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import pytest
from django.contrib.auth.models import Permission, User
from django.db import connections
from django.test import Client
from django.utils import timezone


@dataclass
class Items:
    ready: int
    scheduled: int
    in_flight: int
    stalled: int
    retrying: int
    dead: int
    completed: int


def _claim(topic: str, worker: str, lease_seconds: float | None = None) -> list[Any]:
    from headrace._core import ExternalOutboxSql
    from headrace.django import db

    alias = "default"
    sql = (
        db.external_sql(alias)
        if lease_seconds is None
        else ExternalOutboxSql(db.dialect(alias), lease_seconds=lease_seconds)
    )
    with connections[alias].cursor() as cursor:
        cursor.execute(*sql.claim(worker, 10, topics=[topic]))
        return list(sql.items(cursor.fetchall()))


def make_items() -> Items:
    """One item in each operational state."""
    from headrace.django import enqueue
    from headrace.django.testing import run_outbox

    def boom(item: Any) -> None:
        raise RuntimeError("upstream said no")

    ready = enqueue("orders.created", {"order": 1, "note": "x" * 300}, dedupe_key="order-1", trace_id="trace-abc")
    scheduled = enqueue("orders.reminder", {"order": 2}, run_at=timezone.now() + timedelta(hours=2))
    retrying = enqueue("orders.sync", {"order": 3}, max_attempts=5)
    dead = enqueue("orders.dead", {"order": 4}, max_attempts=1)
    completed = enqueue("orders.done", {"order": 5})
    run_outbox(
        {"orders.sync": boom, "orders.dead": boom, "orders.done": lambda item: None},
        topics=["orders.sync", "orders.dead", "orders.done"],
    )
    in_flight = enqueue("orders.flight", {"order": 6})
    _claim("orders.flight", "worker-a")
    stalled = enqueue("orders.stalled", {"order": 7})
    _claim("orders.stalled", "worker-gone", lease_seconds=0.01)
    time.sleep(0.05)
    assert None not in (ready, scheduled, retrying, dead, completed, in_flight, stalled)
    return Items(ready, scheduled, in_flight, stalled, retrying, dead, completed)  # type: ignore[arg-type]


@pytest.fixture
def items(db: Any) -> Items:
    return make_items()


def staff_client(username: str, *perms: str) -> Client:
    user = User.objects.create_user(username, password="pw", is_staff=True)
    for perm in perms:
        app, codename = perm.split(".")
        user.user_permissions.add(Permission.objects.get(content_type__app_label=app, codename=codename))
    client = Client()
    client.force_login(user)
    return client


@pytest.fixture
def viewer(db: Any) -> Client:
    return staff_client("viewer", "headrace.view_outboxitem")


#: The core's tables, children first. Django's flush (TransactionTestCase) leaves unmanaged
#: tables alone, so tests that commit clean these themselves.
CORE_TABLES = (
    "headrace_invocation_history",
    "headrace_invocations",
    "headrace_workflow_values",
    "headrace_workflow_runs",
    "headrace_workflow_sub_invocations",
    "headrace_app_infos",
    "headrace_outbox",
)


def clean_core_tables() -> None:
    with connections["default"].cursor() as cursor:
        for table in CORE_TABLES:
            cursor.execute(f"DELETE FROM {table}")


@pytest.fixture
def committed(transactional_db: Any) -> Iterator[None]:
    """Data committed for real (the core's own connections see it); the core tables are
    emptied before and after."""
    clean_core_tables()
    yield
    clean_core_tables()


def pytest_addoption(parser: Any) -> None:
    parser.addoption("--browser", action="store_true", help="run the real-browser test (headless chromium)")
