"""The outbox through Python, on SQLite and PostgreSQL: the same behaviour on both."""

from __future__ import annotations

import asyncio
import multiprocessing
import threading
import time
from datetime import datetime, timedelta, timezone

import pytest

from headrace import (
    ConfigError,
    LeaseLost,
    NotFoundError,
    OptimisticClaimOutboxStore,
    OutboxReaper,
    OutboxStatus,
    OutboxStore,
    RetryPolicy,
    SkipLockedClaimOutboxStore,
    StoreUnavailable,
)


def connect(url: str, **kwargs: object) -> OutboxStore:
    return OutboxStore.connect(url, **kwargs)  # type: ignore[arg-type]


def test_connect_picks_the_implementation_from_the_url(db_url: str) -> None:
    store = connect(db_url)
    expected = OptimisticClaimOutboxStore if db_url.startswith("sqlite") else SkipLockedClaimOutboxStore
    assert type(store) is expected and isinstance(store, OutboxStore)
    assert type(expected(db_url)) is expected


def test_payload_round_trips_and_items_carry_every_field(db_url: str) -> None:
    store = connect(db_url)
    payload = {"s": 'é"\n', "i": 2**70, "f": 1.5, "b": [True, False, None], "t": (1, 2), "n": {"k": {}}}
    item_id = store.enqueue("mail", payload, priority=3, dedupe_key="k1", trace_id="tr-1")
    item = store.get(item_id)
    assert item.payload == {**payload, "t": [1, 2]}
    assert (item.topic, item.priority, item.dedupe_key, item.trace_id) == ("mail", 3, "k1", "tr-1")
    assert item.status == OutboxStatus.PENDING and item.status == "pending"
    assert item.attempts == 0 and item.max_attempts == 5
    assert item.lease_owner is None and item.lease_expires_at is None and item.last_error is None
    assert item.created_at.tzinfo is not None
    assert abs(item.created_at - datetime.now(timezone.utc)) < timedelta(seconds=30)


def test_claim_ack_and_stats(db_url: str) -> None:
    store = connect(db_url)
    ids = store.enqueue_many([{"topic": "t", "payload": {"n": n}} for n in range(5)])
    assert ids == sorted(ids) and len(set(ids)) == 5
    items = store.claim_batch("w1", limit=3)
    assert [i.id for i in items] == ids[:3]
    assert all(i.status == "processing" and i.lease_owner == "w1" and i.attempts == 1 for i in items)
    store.mark_success_many([i.id for i in items], "w1")
    assert store.stats() == {"pending": 2, "processing": 0, "completed": 3, "failed": 0}


def test_priority_delay_and_topics(db_url: str) -> None:
    store = connect(db_url)
    low = store.enqueue("a", 1)
    high = store.enqueue("a", 2, priority=10)
    later = store.enqueue("a", 3, delay_seconds=3600)
    at = store.enqueue("a", 4, run_at=datetime.now(timezone.utc) + timedelta(hours=1))
    other = store.enqueue("b", 5)
    assert [i.id for i in store.claim_batch("w", 10, topics=["a"])] == [high, low]
    assert store.get(later).status == "pending" and store.get(at).status == "pending"
    assert [i.id for i in store.claim_batch("w", 10)] == [other]


def test_lease_lost_changes_nothing_and_names_the_items(db_url: str) -> None:
    store = connect(db_url)
    mine, theirs = store.enqueue("t", 1), store.enqueue("t", 2)
    store.claim_batch("w1", 1)
    store.claim_batch("w2", 1)
    with pytest.raises(LeaseLost) as caught:
        store.mark_success_many([mine, theirs], "w1")
    assert caught.value.item_ids == [theirs] and caught.value.code == "lease_lost"
    assert store.get(mine).status == "completed"
    for call in (
        lambda: store.mark_failed(theirs, "w1", "x"),
        lambda: store.mark_retry(theirs, "w1", error="x"),
        lambda: store.extend_lease(theirs, "w1", 10),
    ):
        with pytest.raises(LeaseLost):
            call()
    assert store.get(theirs).lease_owner == "w2"


def test_expired_lease_is_lost_and_reaped(db_url: str) -> None:
    store = connect(db_url, lease_seconds=0.2)
    item_id = store.enqueue("t", 1)
    store.claim_batch("w", 1)
    time.sleep(0.3)
    with pytest.raises(LeaseLost):
        store.mark_success(item_id, "w")
    assert OutboxReaper(store).reap_stale_items() == 1
    item = store.get(item_id)
    assert item.status == "pending" and "w" in (item.last_error or "")
    assert OutboxReaper(store, stale_threshold_seconds=0).reap_stale_items() == 0


def test_extend_lease_moves_the_expiry(db_url: str) -> None:
    store = connect(db_url, lease_seconds=0.3)
    item_id = store.enqueue("t", 1)
    store.claim_batch("w", 1)
    expires = store.extend_lease(item_id, "w", 60)
    assert expires - datetime.now(timezone.utc) > timedelta(seconds=50)
    time.sleep(0.4)
    assert OutboxReaper(store).reap_stale_items() == 0
    store.mark_success(item_id, "w")


def test_retry_backs_off_then_dead_letters_with_the_last_error(db_url: str) -> None:
    store = connect(db_url, retry=RetryPolicy(max_attempts=2, base_seconds=100, jitter=0))
    item_id = store.enqueue("t", 1)
    store.claim_batch("w", 1)
    before = datetime.now(timezone.utc)
    assert store.mark_retry(item_id, "w", error="first") == "pending"
    delay = store.get(item_id).run_at - before
    assert timedelta(seconds=99) < delay < timedelta(seconds=102)
    assert store.claim_batch("w", 1) == []
    store.requeue(item_id)  # make it due again (requeue resets attempts)
    item = store.claim_batch("w", 1)[0]
    assert item.attempts == 1
    assert store.mark_retry(item_id, "w", 0, "again") == "pending"
    store.claim_batch("w", 1)
    assert store.mark_retry(item_id, "w", error="final") == "failed"
    dead = store.get(item_id)
    assert (dead.status, dead.last_error, dead.attempts) == ("failed", "final", 2)
    assert store.requeue_failed() == 1 and store.get(item_id).status == "pending"


def test_mark_failed_is_terminal_and_purge_removes_old_terminal_items(db_url: str) -> None:
    store = connect(db_url)
    a, b = store.enqueue("t", 1), store.enqueue("t", 2)
    store.claim_batch("w", 2)
    store.mark_failed(a, "w", "PERMANENT")
    store.mark_success(b, "w")
    assert store.claim_batch("w", 10) == []
    assert store.purge(3600) == 0
    assert store.purge(0, statuses=["completed", "failed"]) == 2
    with pytest.raises(NotFoundError):
        store.get(a)


def test_dedupe_key_returns_the_existing_id(db_url: str) -> None:
    store = connect(db_url)
    first = store.enqueue("t", {"v": 1}, dedupe_key="order-9")
    assert store.enqueue("t", {"v": 2}, dedupe_key="order-9") == first
    assert store.get(first).payload == {"v": 1}
    store.claim_batch("w", 1)
    store.mark_success(first, "w")
    assert store.enqueue("t", {"v": 3}, dedupe_key="order-9") != first


def test_async_twins_return_awaitables(db_url: str) -> None:
    store = connect(db_url)

    async def scenario() -> dict[str, int]:
        ids = await store.aenqueue_many([{"topic": "t", "payload": n} for n in range(3)])
        await store.aenqueue("t", 99, priority=1)
        items = await store.aclaim_batch("w", 10)
        assert items[0].payload == 99
        await store.amark_success_many([i.id for i in items[1:]], "w")
        await store.amark_retry(items[0].id, "w", 0, "x")
        assert (await store.aget(ids[0])).status == "completed"
        return await store.astats()

    assert asyncio.run(scenario()) == {"pending": 1, "processing": 0, "completed": 3, "failed": 0}


def _claim_until_empty(url: str, worker: str, ready: threading.Barrier | None = None) -> list[int]:
    store = OutboxStore.connect(url)
    if ready is not None:
        ready.wait()  # every claimer connected: start together
    claimed: list[int] = []
    while batch := store.claim_batch(worker, 7):
        claimed.extend(i.id for i in batch)
        store.mark_success_many([i.id for i in batch], worker)
    return claimed


def test_concurrent_claimers_in_threads_never_share_an_item(db_url: str) -> None:
    store = connect(db_url)
    ids = store.enqueue_many([{"topic": "t", "payload": n} for n in range(300)])
    results: dict[str, list[int]] = {}
    ready = threading.Barrier(4)
    threads = [
        threading.Thread(target=lambda w=w: results.__setitem__(w, _claim_until_empty(db_url, w, ready)))
        for w in ("a", "b", "c", "d")
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    claimed = [i for r in results.values() for i in r]
    assert sorted(claimed) == ids, "every item claimed exactly once"
    assert sum(1 for r in results.values() if r) >= 2, "the work was actually shared"


def test_concurrent_claimers_in_processes_never_share_an_item(db_url: str) -> None:
    store = connect(db_url)
    ids = store.enqueue_many([{"topic": "t", "payload": n} for n in range(400)])
    ctx = multiprocessing.get_context("spawn")
    with ctx.Pool(3) as pool:
        results = pool.starmap(_claim_until_empty, [(db_url, f"p{n}") for n in range(3)])
    claimed = [i for r in results for i in r]
    assert sorted(claimed) == ids
    assert store.stats()["completed"] == 400


def test_processes_migrating_at_once_are_safe(db_url: str) -> None:
    ctx = multiprocessing.get_context("spawn")
    with ctx.Pool(3) as pool:
        pool.starmap(_claim_until_empty, [(db_url, f"p{n}") for n in range(3)])
    assert connect(db_url).stats()["pending"] == 0


class Unserialisable:
    pass


@pytest.mark.parametrize(
    ("call", "fragment"),
    [
        (lambda s: s.enqueue("t", {"x": Unserialisable()}), "Unserialisable"),
        (lambda s: s.enqueue("t", {"x": float("nan")}), "NaN"),
        (lambda s: s.enqueue("t", "x" * (1024 * 1024 + 1)), "max_payload_bytes"),
        (lambda s: s.enqueue("", 1), "topic"),
        (lambda s: s.enqueue("t", 1, max_attempts=0), "max_attempts"),
        (lambda s: s.enqueue("t", 1, delay_seconds=-1), "delay_seconds"),
        (lambda s: s.enqueue("t", 1, run_at=datetime(2030, 1, 1)), "timezone-aware"),
        (lambda s: s.enqueue_many([{"topic": "t", "payload": 1}, {"topic": "t", "payload": {1, 2}}]), "set"),
        (lambda s: s.enqueue_many([{"topic": "t", "payload": 1, "colour": "red"}]), "colour"),
        (lambda s: s.claim_batch("w", -1), "-1"),
        (lambda s: s.purge(-5), "older_than_seconds"),
        (lambda s: s.purge(5, statuses=["done"]), "done"),
    ],
)
def test_bad_input_raises_a_typed_error_naming_the_value_and_writes_nothing(
    sqlite_url: str, call: object, fragment: str
) -> None:
    store = connect(sqlite_url)
    with pytest.raises(ConfigError) as caught:
        call(store)  # type: ignore[operator]
    assert fragment in str(caught.value)
    assert sum(store.stats().values()) == 0


@pytest.mark.parametrize(
    ("url", "fragment"),
    [
        ("mysql://u:secret@h/db", "mysql"),
        ("no-scheme-here", "malformed"),
        ("postgres://[::1", "malformed"),
        ("sqlite://", "names no file"),
    ],
)
def test_bad_urls_are_config_errors_without_the_password(url: str, fragment: str) -> None:
    with pytest.raises(ConfigError) as caught:
        OutboxStore.connect(url)
    assert fragment in str(caught.value) and "secret" not in str(caught.value)


def test_bad_store_settings_are_config_errors(sqlite_url: str) -> None:
    with pytest.raises(ConfigError, match="lease_seconds"):
        OutboxStore.connect(sqlite_url, lease_seconds=-1)
    with pytest.raises(ConfigError, match="factor"):
        RetryPolicy(factor=0.1)
    with pytest.raises(ConfigError, match="OptimisticClaimOutboxStore"):
        OptimisticClaimOutboxStore("postgres://localhost/x")


def test_unknown_ids_raise_not_found(db_url: str) -> None:
    store = connect(db_url)
    for call in (
        lambda: store.get(424242),
        lambda: store.mark_success(424242, "w"),
        lambda: store.mark_retry(424242, "w"),
        lambda: store.requeue(424242),
    ):
        with pytest.raises(NotFoundError, match="424242"):
            call()


def test_an_unreachable_postgres_is_store_unavailable() -> None:
    with pytest.raises(StoreUnavailable) as caught:
        OutboxStore.connect("postgres://nobody:pw@127.0.0.1:1/none")
    assert caught.value.retryable and "pw" not in str(caught.value)


def test_url_defaults_to_the_environment(sqlite_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HEADRACE_DATABASE_URL", sqlite_url)
    assert OutboxStore.connect().url == sqlite_url
    monkeypatch.delenv("HEADRACE_DATABASE_URL")
    with pytest.raises(ConfigError, match="HEADRACE_DATABASE_URL"):
        OutboxStore.connect()


def test_blocking_calls_release_the_gil(db_url: str) -> None:
    """A Python thread keeps running while another waits on the database."""
    store = connect(db_url)
    store.enqueue_many([{"topic": "t", "payload": n} for n in range(2000)])
    ticks = 0
    stop = threading.Event()

    def spin() -> None:
        nonlocal ticks
        while not stop.is_set():
            ticks += 1

    spinner = threading.Thread(target=spin)
    spinner.start()
    try:
        before = ticks
        while batch := store.claim_batch("w", 50):
            store.mark_success_many([i.id for i in batch], "w")
        assert ticks > before
    finally:
        stop.set()
        spinner.join()


def test_iter_claims_overlaps_claims_and_gives_back_what_it_did_not_hand_out(db_url: str) -> None:
    store = connect(db_url)
    ids = store.enqueue_many([{"topic": "t", "payload": n} for n in range(25)])
    seen: list[int] = []
    for batch in store.iter_claims("w", 10):
        seen.extend(i.id for i in batch)
        store.mark_success_many([i.id for i in batch], "w")
    assert seen == ids and store.stats()["completed"] == 25

    more = store.enqueue_many([{"topic": "t", "payload": n} for n in range(25)])
    with store.iter_claims("w", 10) as claims:
        first = next(claims)
        assert [i.id for i in first] == more[:10]
    stats = store.stats()
    assert (stats["processing"], stats["pending"]) == (10, 15), "the prefetched batch went back"
    assert all(i.attempts == 1 for i in store.claim_batch("x", 100)), "without spending an attempt"
