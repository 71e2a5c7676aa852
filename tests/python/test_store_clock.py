"""Every time given to a store as a number of seconds is read against the store's clock."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from headrace.outbox import ManualClock, OutboxStore

START = datetime(2030, 1, 1, tzinfo=timezone.utc)


def test_run_at_in_seconds_uses_the_store_clock_like_delay_seconds(db_url: str) -> None:
    clock = ManualClock(START)
    store = OutboxStore.connect(db_url, clock=clock)
    by_run_at = store.enqueue("t", {"n": 1}, run_at=5)
    by_delay = store.enqueue("t", {"n": 2}, delay_seconds=5)
    by_many = store.enqueue_many([{"topic": "t", "payload": {"n": 3}, "run_at": 5}])[0]
    expected = START + timedelta(seconds=5)
    assert [store.get(i).run_at for i in (by_run_at, by_delay, by_many)] == [expected] * 3
    assert store.claim_batch("w", 10) == [], "nothing is due before the clock moves"
    clock.advance(seconds=5)
    assert sorted(item.id for item in store.claim_batch("w", 10)) == sorted([by_run_at, by_delay, by_many])


def test_due_by_and_next_attempt_in_seconds_use_the_store_clock(db_url: str) -> None:
    clock = ManualClock(START)
    store = OutboxStore.connect(db_url, clock=clock)
    item_id = store.enqueue("t", {}, delay_seconds=30)
    assert store.claim_batch("w", 10, due_by=29) == []
    [item] = store.claim_batch("w", 10, due_by=30)
    store.mark_retry(item.id, "w", next_attempt=60, error="later")
    assert store.get(item_id).run_at == START + timedelta(seconds=60)


def test_manual_clock_advance_takes_seconds_by_keyword() -> None:
    clock = ManualClock(START)
    clock.advance(seconds=1.5)
    clock.advance(2)
    assert clock.now() == START + timedelta(seconds=3.5)


class _RateLimited(Exception):
    retry_after = 45


def test_a_handlers_retry_after_is_applied_on_the_store_clock(db_url: str) -> None:
    from headrace.worker import OutboxWorker

    clock = ManualClock(START)
    store = OutboxStore.connect(db_url, clock=clock)
    item_id = store.enqueue("t", {})

    def handler(item: object) -> None:
        raise _RateLimited("slow down")

    report = OutboxWorker(store, {"t": handler}, reaper_interval=None).run_until_empty(timeout=10)
    assert report.retried == 1
    item = store.get(item_id)
    assert item.status == "pending"
    assert item.run_at == START + timedelta(seconds=45), "retry_after counts from the store's clock, not the wall clock"


def test_handler_outcomes_refuse_a_bad_retry_after() -> None:
    import pytest

    from headrace._core import HandlerOutcome
    from headrace.errors import ConfigError

    assert HandlerOutcome.failed("boom", True, 1.5).retry_after == 1.5
    assert HandlerOutcome.completed().kind == "completed"
    with pytest.raises(ConfigError, match="retry_after must be a finite number >= 0"):
        HandlerOutcome.failed("boom", True, float("nan"))
    with pytest.raises(ConfigError, match="retry_after must be a finite number >= 0"):
        HandlerOutcome.failed("boom", True, -1.0)


def _stored_updated_at(url: str, invocation_id: str) -> datetime:
    """An invocation's ``updated_at`` as stored, read past the backend."""
    query = "SELECT updated_at FROM headrace_invocations WHERE invocation_id = "
    if url.startswith("sqlite://"):
        import sqlite3

        with sqlite3.connect(url.removeprefix("sqlite://")) as conn:
            (micros,) = conn.execute(query + "?", (invocation_id,)).fetchone()
        return datetime(1970, 1, 1, tzinfo=timezone.utc) + timedelta(microseconds=micros)
    import psycopg

    with psycopg.connect(url) as conn:
        row = conn.execute(query + "%s", (invocation_id,)).fetchone()
    assert row is not None
    at: datetime = row[0]
    return at


def test_state_history_and_updated_at_use_the_store_clock(db_url: str) -> None:
    from headrace.state import Invocation, InvocationStatus, StateBackend

    clock = ManualClock(START)
    state = StateBackend.connect(db_url, clock=clock)
    try:
        invocation = Invocation("task", {"n": 1}, created_at=START)
        state.upsert_invocation(invocation)
        clock.advance(seconds=90)
        state.add_history(invocation, InvocationStatus.PENDING)
        state.wait_for_all_async_operations()
        later = START + timedelta(seconds=90)
        assert [entry.timestamp for entry in state.get_history(invocation)] == [later]
        assert _stored_updated_at(db_url, invocation.invocation_id) == later, "not the wall clock"
    finally:
        state.close()
