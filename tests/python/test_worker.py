"""OutboxWorker: Python handlers driven by the Rust claim loop, on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import os
import signal
import threading
import time
from datetime import timedelta
from typing import Any, ClassVar

import pytest

from headrace import IngestRejected, IngestUnavailable, OutboxReaper, OutboxStore, RetryPolicy
from headrace.errors import ConfigError
from headrace.integrations import QueuedClient
from headrace.outbox import ManualClock, OutboxItem
from headrace.worker import OutboxWorker


def connect(url: str, **kwargs: Any) -> OutboxStore:
    kwargs.setdefault("retry", RetryPolicy(max_attempts=3, base_seconds=0, jitter=0))
    return OutboxStore.connect(url, **kwargs)


def worker(store: OutboxStore, handlers: Any, **kwargs: Any) -> OutboxWorker:
    kwargs.setdefault("poll_interval", 0.05)
    return OutboxWorker(store, handlers, worker_id="w-test", **kwargs)


def test_each_handler_outcome(db_url: str) -> None:
    store = connect(db_url)
    ok = store.enqueue("t", {"do": "ok"})
    rejected = store.enqueue("t", {"do": "reject"})
    flaky = store.enqueue("t", {"do": "flaky"})
    calls: list[int] = []

    def handle(item: OutboxItem) -> None:
        calls.append(item.id)
        if item.payload["do"] == "reject":
            raise IngestRejected("bad record")
        if item.payload["do"] == "flaky":
            raise IngestUnavailable("service down")

    report = worker(store, {"t": handle}).run_until_empty()
    assert (report.completed, report.failed, report.retried) == (1, 2, 2)
    assert calls.count(rejected) == 1, "non-retryable errors are not retried"
    assert calls.count(flaky) == 3, "retryable errors are retried until attempts run out"
    assert store.get(ok).status == "completed"
    assert store.get(rejected).last_error == "IngestRejected: bad record"
    dead = store.get(flaky)
    assert (dead.status, dead.attempts, dead.last_error) == ("failed", 3, "IngestUnavailable: service down")


def test_plain_exceptions_are_classified_by_their_retryable_attribute(db_url: str) -> None:
    store = connect(db_url)

    class Permanent(Exception):
        retryable = False

    first = store.enqueue("a", 1)
    second = store.enqueue("b", 2)

    def boom(item: OutboxItem) -> None:
        raise RuntimeError("oops")

    def permanent(item: OutboxItem) -> None:
        raise Permanent("never")

    worker(store, {"a": boom, "b": permanent}).run_until_empty()
    assert store.get(first).attempts == 3, "an exception without retryable is retried"
    assert store.get(second).attempts == 1


def test_async_handlers_run_on_an_event_loop(db_url: str) -> None:
    store = connect(db_url)
    ids = store.enqueue_many([{"topic": "t", "payload": n} for n in range(20)])
    seen: list[int] = []

    async def handle(item: OutboxItem) -> None:
        await asyncio.sleep(0.001)
        seen.append(item.payload)
        if item.payload == 7:
            raise IngestRejected("seven is rejected")

    report = worker(store, {"t": handle}).run_until_empty()
    assert sorted(seen) == list(range(20))
    assert (report.completed, report.failed) == (19, 1)
    assert store.get(ids[7]).status == "failed"


def test_unknown_topics_are_dead_lettered_with_a_reason(db_url: str) -> None:
    store = connect(db_url)
    item_id = store.enqueue("nobody.listens", {})
    report = worker(store, {"t": lambda item: None}).run_until_empty()
    assert report.failed == 1
    error = store.get(item_id).last_error or ""
    assert "no handler for topic 'nobody.listens'" in error


def test_retry_timing_follows_the_policy_with_an_injected_clock(db_url: str) -> None:
    clock = ManualClock()
    store = OutboxStore.connect(db_url, clock=clock, retry=RetryPolicy(max_attempts=3, base_seconds=10, jitter=0))
    item_id = store.enqueue("t", {})

    def fail(item: OutboxItem) -> None:
        raise IngestUnavailable("later")

    w = worker(store, {"t": fail})
    for delay in (10, 20):
        assert w.run_until_empty().retried == 1
        assert store.get(item_id).run_at == clock.now() + timedelta(seconds=delay)
        assert w.run_until_empty().processed == 0, "not due before the backoff has passed"
        clock.advance(delay)
    assert w.run_until_empty().failed == 1


class SyncToCrm(QueuedClient):
    key = "crm.sync"
    max_retries = 1
    retry_backoff_base_seconds = 30.0
    calls: ClassVar[list[Any]] = []

    def run(self, payload: Any) -> None:
        type(self).calls.append(payload)
        raise IngestUnavailable("crm is down")


def test_queued_clients_are_dispatched_with_their_own_retry_settings(db_url: str) -> None:
    clock = ManualClock()
    store = OutboxStore.connect(db_url, clock=clock, retry=RetryPolicy(max_attempts=10, base_seconds=1, jitter=0))
    SyncToCrm.calls = []
    item_id = SyncToCrm().enqueue({"contact": 7}, store=store)
    item = store.get(item_id)
    assert (item.topic, item.max_attempts) == ("client.crm.sync", 2)
    w = worker(store, [SyncToCrm])
    assert w.run_until_empty().retried == 1
    delay = (store.get(item_id).run_at - clock.now()).total_seconds()
    assert 27 <= delay <= 33, "retry_backoff_base_seconds=30 with 10% jitter"
    clock.advance(40)
    assert w.run_until_empty().failed == 1, "max_retries=1: two attempts in all"
    assert SyncToCrm.calls == [{"contact": 7}, {"contact": 7}]


def test_hooks_see_every_outcome(db_url: str) -> None:
    store = connect(db_url)
    store.enqueue("t", "ok")
    store.enqueue("t", "reject")
    events: list[tuple[str, Any]] = []
    w = worker(
        store,
        {"t": lambda item: (_ for _ in ()).throw(IngestRejected("no")) if item.payload == "reject" else None},
    )
    for event in ("item_started", "item_completed", "item_failed", "item_retried"):
        w.connect(event, lambda event=event, item=None, **kw: events.append((event, item.payload)))
    w.run_until_empty()
    assert sorted(events) == sorted(
        [
            ("item_started", "ok"),
            ("item_started", "reject"),
            ("item_completed", "ok"),
            ("item_failed", "reject"),
        ]
    )
    with pytest.raises(ConfigError):
        w.connect("item_exploded", print)


def test_stop_finishes_in_flight_items_and_releases_the_rest(db_url: str) -> None:
    store = connect(db_url)
    store.enqueue_many([{"topic": "t", "payload": n} for n in range(6)])
    handled: list[int] = []

    def handle(item: OutboxItem) -> None:
        handled.append(item.payload)
        if len(handled) == 2:
            w.stop()

    w = worker(store, {"t": handle})
    report = w.run()
    assert (report.completed, report.released) == (2, 4)
    assert store.stats() == {"pending": 4, "processing": 0, "completed": 2, "failed": 0}
    assert all(i.attempts == 1 for i in store.claim_batch("x", 10)), "released items kept their attempts"


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_run_stops_gracefully_on_signals(sqlite_url: str, signum: int) -> None:
    store = connect(sqlite_url)
    store.enqueue("t", 1)
    w = worker(store, {"t": lambda item: None})
    timer = threading.Timer(0.5, os.kill, (os.getpid(), signum))
    timer.start()
    started = time.monotonic()
    report = w.run()
    timer.join()
    assert report.completed == 1
    assert time.monotonic() - started < 5
    assert signal.getsignal(signal.SIGTERM) is not None  # handlers restored


def test_leases_are_extended_while_a_handler_runs_long(db_url: str) -> None:
    store = connect(db_url, lease_seconds=1.0)
    item_id = store.enqueue("t", 1)
    report = worker(store, {"t": lambda item: time.sleep(1.6)}, reaper_interval=0.2).run_until_empty()
    assert (report.completed, report.reaped) == (1, 0)
    assert store.get(item_id).status == "completed"


def test_the_worker_reaps_abandoned_items_itself(db_url: str) -> None:
    store = connect(db_url, lease_seconds=0.3)
    item_id = store.enqueue("t", 1)
    store.claim_batch("crashed-worker", 1)
    done = threading.Event()
    w = worker(store, {"t": lambda item: done.set()}, reaper_interval=0.1)
    thread = threading.Thread(target=lambda: results.append(w.run()))
    results: list[Any] = []
    thread.start()
    assert done.wait(10), "the abandoned item was never reaped and handled"
    w.stop()
    thread.join()
    assert results[0].reaped == 1 and store.get(item_id).status == "completed"


def test_an_idle_worker_wakes_on_enqueue(db_url: str) -> None:
    store = connect(db_url)
    producer = connect(db_url) if db_url.startswith("postgres") else store  # PG: LISTEN/NOTIFY
    handled = threading.Event()
    w = worker(store, {"t": lambda item: handled.set()}, poll_interval=60)
    thread = threading.Thread(target=w.run)
    thread.start()
    time.sleep(0.3)
    producer.enqueue("t", 1)
    try:
        assert handled.wait(5), "the idle worker (60 s poll) did not wake on enqueue"
    finally:
        w.stop()
        thread.join()


def test_metrics_are_prometheus_text(sqlite_url: str) -> None:
    store = connect(sqlite_url)
    store.enqueue("t", 1)
    w = worker(store, {"t": lambda item: None})
    w.run_until_empty()
    text = w.metrics()
    assert 'headrace_outbox_items_completed_total{topic="t"} 1' in text
    assert "headrace_outbox_claim_seconds_count" in text


def test_bad_worker_settings_are_config_errors(sqlite_url: str) -> None:
    store = connect(sqlite_url)
    with pytest.raises(ConfigError, match="batch_size"):
        OutboxWorker(store, {"t": print}, batch_size=0)
    with pytest.raises(ConfigError, match="concurrency"):
        OutboxWorker(store, {"t": print}, concurrency=0)
    with pytest.raises(ConfigError, match="neither callable"):
        OutboxWorker(store, {"t": 42})
    with pytest.raises(ConfigError, match="only QueuedClients"):
        OutboxWorker(store, [print])


def test_core_log_events_reach_python_logging(sqlite_url: str, caplog: pytest.LogCaptureFixture) -> None:
    store = connect(sqlite_url, lease_seconds=0.2)
    store.enqueue("t", 1)
    store.claim_batch("gone-worker", 1)
    time.sleep(0.3)
    with caplog.at_level("INFO", logger="headrace"):
        assert OutboxReaper(store).reap_stale_items() == 1
        deadline = time.monotonic() + 5
        while not any(r.name == "headrace.outbox" for r in caplog.records) and time.monotonic() < deadline:
            time.sleep(0.01)
    record = next(r for r in caplog.records if r.name == "headrace.outbox")
    assert record.levelname == "INFO" and "reaped" in record.getMessage()


def test_with_a_state_backend_every_dispatch_is_an_invocation(sqlite_url: str) -> None:
    from headrace.state import Invocation, StateBackend

    store = connect(sqlite_url)
    state = StateBackend.connect("memory://")
    ok = store.enqueue("t", {"n": 1})
    bad = store.enqueue("t", {"n": 2})
    lost = store.enqueue("unknown", {})

    def handle(item: OutboxItem) -> dict[str, int]:
        if item.payload["n"] == 2:
            raise IngestRejected("n must not be 2")
        return {"double": item.payload["n"] * 2}

    worker(store, {"t": handle}, state=state).run_until_empty()
    state.wait_for_all_async_operations()

    def invocation(item_id: int) -> Invocation:
        runs = [
            inv
            for task in ("outbox:t", "outbox:unknown")
            for inv in state.get_invocations_by_task(task)
            if inv.invocation_id.startswith(f"outbox-item-{item_id}-attempt-1-claim-")
        ]
        assert len(runs) == 1, runs
        return runs[0]

    assert [h.status for h in state.get_history(invocation(ok))] == ["running", "success"]
    assert state.get_result(invocation(ok)) == {"double": 2}
    assert [h.status for h in state.get_history(invocation(bad))] == ["running", "failed"]
    exc = state.get_exception(invocation(bad))
    assert isinstance(exc, IngestRejected) and "n must not be 2" in str(exc)
    assert [h.status for h in state.get_history(invocation(lost))] == ["running", "failed"]
    assert invocation(ok).task_id == "outbox:t"


def test_metrics_are_exported_through_opentelemetry(sqlite_url: str, otel_reader: Any) -> None:
    reader = otel_reader
    store = connect(sqlite_url)
    store.enqueue_many([{"topic": "otel", "payload": n} for n in range(3)])
    w = worker(store, {"otel": lambda item: None})
    w.run_until_empty()
    exported = reader.get_metrics_data()
    points = {
        (metric.name, dict(point.attributes).get("topic")): point.value
        for rm in exported.resource_metrics
        for sm in rm.scope_metrics
        for metric in sm.metrics
        for point in metric.data.data_points
        if dict(point.attributes).get("worker_id") == w.worker_id
    }
    assert points[("headrace.outbox.items.completed", "otel")] == 3
    assert points[("headrace.outbox.items.claimed", "otel")] == 3
