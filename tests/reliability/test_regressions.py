"""Regression tests of defects a hostile tester found (issue #9), through the Python API, on
SQLite and PostgreSQL."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from headrace import IngestRejected, OutboxReaper, OutboxStore
from headrace.errors import ConfigError, LeaseLost, StoreError
from headrace.runner import NullSink, PolicyManager
from headrace.state import StateBackend
from headrace.worker import OutboxWorker

from .fixtures import fresh_pg_url


@pytest.fixture(params=["sqlite", "postgres"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    yield f"sqlite://{tmp_path / 'headrace.db'}" if request.param == "sqlite" else fresh_pg_url()


def test_a_requeued_item_runs_again_under_a_state_backend(db_url: str) -> None:
    """Defect 2: requeue resets attempts, so the attempt number alone named the new execution
    like the finished one; the handler was skipped and the item dead-lettered again."""
    store = OutboxStore.connect(db_url)
    state = StateBackend(db_url)
    calls: list[int] = []

    def handle(item: Any) -> None:
        calls.append(item.id)
        if len(calls) == 1:
            raise IngestRejected("the first run fails for good")

    item_id = store.enqueue("t", {"n": 1})
    OutboxWorker(store, {"t": handle}, state=state).run_until_empty()
    assert store.get(item_id).status == "failed"
    store.requeue(item_id)
    OutboxWorker(store, {"t": handle}, state=state).run_until_empty()
    state.wait_for_all_async_operations()
    assert calls == [item_id, item_id]
    assert store.get(item_id).status == "completed"
    executions = state.get_invocations_by_task("outbox:t")
    assert len({inv.invocation_id for inv in executions}) == 2
    state.close()


@pytest.mark.parametrize("value", [1e17, 1e300, float("inf")])
def test_huge_numbers_are_config_errors_not_panics(db_url: str, value: float) -> None:
    """Defect 3: plain numbers made Rust panic (PanicException is not an Exception)."""
    store = OutboxStore.connect(db_url)
    item_id = store.enqueue("t", 1)
    store.claim_batch("w", 1)
    for call in (
        lambda: store.enqueue("t", 1, delay_seconds=value),
        lambda: store.extend_lease(item_id, "w", value),
        lambda: store.purge(value),
        lambda: PolicyManager(sink=NullSink()).stop(value),
    ):
        with pytest.raises(ConfigError):
            call()
    # The store still works afterwards (a panic used to leave SQLite "closed").
    store.mark_success(item_id, "w")
    assert store.get(item_id).status == "completed"


def test_policy_manager_state_hides_the_password() -> None:
    """Defect 5: PolicyManager(state=url).state handed the raw URL (password included) on."""
    url = fresh_pg_url().replace("postgres://postgres@", "postgres://postgres:Zq9secret@")
    manager = PolicyManager(state=url, sink=NullSink())
    assert "Zq9secret" not in str(manager.state)
    assert "***" in str(manager.state)
    manager.stop(5)


def test_a_hung_handler_is_given_up_and_its_late_ack_gets_lease_lost(db_url: str) -> None:
    """Defect 7b: a hung handler blocked run_until_empty and stop, and its lease was extended
    for ever. With handler_timeout its lease is let go; another worker completes the item."""
    store = OutboxStore.connect(db_url, lease_seconds=1.0)
    item_id = store.enqueue("t", 1)
    release = threading.Event()

    def hangs(item: Any) -> None:
        release.wait(30)

    hung = OutboxWorker(store, {"t": hangs}, worker_id="hung", batch_size=1, handler_timeout=0.5, reaper_interval=None)
    started = time.monotonic()
    report = hung.run_until_empty()
    assert time.monotonic() - started < 5
    assert report.abandoned == 1
    time.sleep(1.2)  # the lease, no longer renewed, lapses
    assert OutboxReaper(store).reap_stale_items() == 1
    done: list[int] = []
    rescuer = OutboxWorker(store, {"t": lambda item: done.append(item.id)}, worker_id="rescuer", reaper_interval=0.1)
    rescuer.run_until_empty()
    assert done == [item_id]
    assert store.get(item_id).status == "completed"
    release.set()
    with pytest.raises(LeaseLost):
        store.mark_success(item_id, "hung")


def test_stop_returns_in_time_despite_a_hung_handler(db_url: str) -> None:
    """Defect 7b: run_until_empty(timeout=) waited for ever on a hung handler."""
    store = OutboxStore.connect(db_url)
    store.enqueue("t", 1)
    release = threading.Event()
    worker = OutboxWorker(store, {"t": lambda item: release.wait(30)}, stop_grace=0.5)
    started = time.monotonic()
    report = worker.run_until_empty(timeout=0.5)
    elapsed = time.monotonic() - started
    release.set()
    assert elapsed < 5, elapsed
    assert report.abandoned == 1


def test_a_closed_store_releases_its_database_and_refuses_later_calls(db_url: str) -> None:
    """Defect 13: a store could not be closed; its connections and LISTEN task lived until
    garbage collection, so DROP DATABASE failed while it lived."""
    store = OutboxStore.connect(db_url)
    store.enqueue("t", 1)
    OutboxWorker(store, {"t": lambda item: None}).run_until_empty()  # starts LISTEN on PostgreSQL
    store.close()
    store.close()  # twice is harmless
    with pytest.raises(StoreError, match="closed") as raised:
        store.stats()
    assert raised.value.retryable is False


def test_dropping_the_database_works_once_the_store_is_closed() -> None:
    admin = fresh_pg_url().split("?")[0]
    import psycopg

    name = f"headrace_drop_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}")
    url = admin.rsplit("/", 1)[0] + f"/{name}"
    with OutboxStore.connect(url) as store:
        store.enqueue("t", 1)
        OutboxWorker(store, {"t": lambda item: None}).run_until_empty()
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f"DROP DATABASE {name}")  # fails while any connection is open
