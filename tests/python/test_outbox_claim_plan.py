"""The PostgreSQL claim is an ordered walk of the claim index, whatever the statistics say.

A queue table is usually unanalyzed right after a burst of enqueues; the planner then guessed
that few rows were pending and scanned and sorted the whole backlog on every claim. The claim
function (migration ``0006_claim``) pins the plan. These tests read the plan PostgreSQL really
ran inside the function, through ``auto_explain`` notices, on a table that is freshly filled,
analyzed, and full of completed rows, with custom and with generic plans.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from conftest import fresh_pg_url

from headrace import OutboxStore

psycopg = pytest.importorskip("psycopg")

CLAIM = (
    "SELECT id, priority FROM headrace_outbox_claim("
    "%(worker)s, %(limit)s, now(), now() + interval '5 minutes', now(), NULL, '{}')"
)


@pytest.fixture
def pg_url() -> Iterator[str]:
    url = fresh_pg_url()
    yield url
    admin, _, options = url.partition("?options=-c%20search_path%3D")
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f"DROP SCHEMA {options} CASCADE")


def fill(url: str, pending: int) -> None:
    """Enqueues ``pending`` items through headrace in batches of 1000, as an application would."""
    store = OutboxStore.connect(url)
    for start in range(0, pending, 1000):
        count = min(1000, pending - start)
        store.enqueue_many(
            [{"topic": "plan", "payload": {"n": start + i}, "priority": (start + i) % 3} for i in range(count)]
        )


def explaining(conn: Any, plans: list[dict[str, Any]], *, generic: bool = False) -> None:
    """From now on, the plan of every statement ``conn`` runs (nested ones too) goes to ``plans``."""

    def on_notice(diag: Any) -> None:
        message = diag.message_primary or ""
        if "plan:" in message:
            plans.append(json.loads(message.split("plan:", 1)[1]))

    conn.add_notice_handler(on_notice)
    conn.execute("LOAD 'auto_explain'")
    for setting, value in {
        "auto_explain.log_min_duration": "0",
        "auto_explain.log_nested_statements": "on",
        "auto_explain.log_format": "json",
        "auto_explain.log_level": "notice",
        "client_min_messages": "notice",
        "plan_cache_mode": "force_generic_plan" if generic else "auto",
    }.items():
        conn.execute(f"SET {setting} = '{value}'")


def explained_claims(url: str, times: int, *, generic: bool = False) -> list[dict[str, Any]]:
    """Claims ``times`` batches of 10 and returns the plan of each UPDATE run inside the function."""
    plans: list[dict[str, Any]] = []
    with psycopg.connect(url, autocommit=True) as conn:
        explaining(conn, plans, generic=generic)
        for _ in range(times):
            claimed = conn.execute(CLAIM, {"worker": "plan-test", "limit": 10}).fetchall()
            assert len(claimed) == 10
            assert [row[1] for row in claimed] == [2] * 10, "the claim takes the highest priority first"
    return [plan["Plan"] for plan in plans if plan["Query Text"].lstrip().startswith("WITH picked")]


ACK_CLAIM = (
    "SELECT id, status FROM headrace_outbox_ack_claim("
    "%(ack)s, %(worker)s, %(limit)s, now(), now() + interval '5 minutes', now(), NULL, '{}')"
)


def nodes(plan: dict[str, Any]) -> Iterator[dict[str, Any]]:
    yield plan
    for child in plan.get("Plans", []):
        yield from nodes(child)


def assert_index_driven(plans: list[dict[str, Any]], expected: int) -> None:
    assert len(plans) == expected, f"expected {expected} claim plans from auto_explain, got {len(plans)}"
    for plan in plans:
        kinds = [(node["Node Type"], node.get("Index Name")) for node in nodes(plan)]
        assert ("Index Scan", "headrace_outbox_claim") in kinds, kinds
        assert ("Index Scan", "headrace_outbox_pkey") in kinds, kinds
        for node_type, _ in kinds:
            assert node_type not in {"Seq Scan", "Bitmap Heap Scan", "Bitmap Index Scan", "Sort", "Hash Join"}, kinds


@pytest.mark.parametrize("generic", [False, True], ids=["custom-plan", "generic-plan"])
def test_claim_walks_the_claim_index_on_a_freshly_filled_table(pg_url: str, generic: bool) -> None:
    fill(pg_url, 5000)
    with psycopg.connect(pg_url, autocommit=True) as conn:
        (analyzed,) = conn.execute(
            "SELECT reltuples FROM pg_class WHERE oid = 'headrace_outbox'::regclass"
        ).fetchone() or (None,)
    assert analyzed is not None and analyzed < 0, "the table must not have been analyzed yet"
    # Seven calls: plpgsql switches from custom to generic plans after five.
    assert_index_driven(explained_claims(pg_url, 7, generic=generic), 7)


def test_claim_walks_the_claim_index_on_an_analyzed_table(pg_url: str) -> None:
    fill(pg_url, 5000)
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute("ANALYZE headrace_outbox")
    assert_index_driven(explained_claims(pg_url, 7), 7)


@pytest.mark.parametrize("analyze", [False, True], ids=["fresh", "analyzed"])
def test_claim_walks_the_claim_index_among_many_completed_rows(pg_url: str, analyze: bool) -> None:
    OutboxStore.connect(pg_url)  # migrates
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO headrace_outbox (topic, payload, status, max_attempts, run_at, created_at, updated_at) "
            "SELECT 'done', '{}', 'completed', 5, now(), now(), now() FROM generate_series(1, 200000)"
        )
    fill(pg_url, 1000)
    if analyze:
        with psycopg.connect(pg_url, autocommit=True) as conn:
            conn.execute("ANALYZE headrace_outbox")
    assert_index_driven(explained_claims(pg_url, 6), 6)


def test_store_claims_through_the_pinned_function_in_claim_order(pg_url: str) -> None:
    fill(pg_url, 300)
    store = OutboxStore.connect(pg_url)
    items = store.claim_batch("order-test", 150)
    assert [item.priority for item in items] == [2] * 100 + [1] * 50
    assert [item.id for item in items[:100]] == sorted(item.id for item in items[:100])
    assert all(item.status == "processing" and item.lease_owner == "order-test" for item in items)
    store.mark_success_many([item.id for item in items], "order-test")
    assert store.stats()["completed"] == 150
    assert store.stats()["pending"] == 150


def test_ack_finds_its_rows_through_an_index_on_a_fresh_table(pg_url: str) -> None:
    fill(pg_url, 3000)
    plans: list[dict[str, Any]] = []

    def on_notice(diag: Any) -> None:
        message = diag.message_primary or ""
        if "plan:" in message:
            plans.append(json.loads(message.split("plan:", 1)[1]))

    with psycopg.connect(pg_url, autocommit=True) as conn:
        claimed = [row[0] for row in conn.execute(CLAIM, {"worker": "ack-test", "limit": 50}).fetchall()]
        conn.add_notice_handler(on_notice)
        conn.execute("LOAD 'auto_explain'")
        for setting in (
            "auto_explain.log_min_duration = 0",
            "auto_explain.log_nested_statements = on",
            "auto_explain.log_format = json",
            "auto_explain.log_level = notice",
            "client_min_messages = notice",
        ):
            conn.execute(f"SET {setting}")
        acked = conn.execute("SELECT headrace_outbox_ack(%s, 'ack-test', now())", (claimed,)).fetchall()
    assert sorted(row[0] for row in acked) == sorted(claimed)
    updates = [p["Plan"] for p in plans if p["Query Text"].lstrip().startswith("UPDATE")]
    assert len(updates) == 1
    kinds = [(node["Node Type"], node.get("Index Name")) for node in nodes(updates[0])]
    # The primary key, or the lease index (which holds only processing rows): never the table.
    assert {("Index Scan", "headrace_outbox_pkey"), ("Index Scan", "headrace_outbox_lease")} & set(kinds), kinds
    assert not {"Seq Scan", "Bitmap Heap Scan"} & {kind for kind, _ in kinds}, kinds


@pytest.mark.parametrize("durable", [False, True], ids=["default", "durable_acks"])
def test_claim_and_ack_commit_without_waiting_for_the_disk_unless_asked(pg_url: str, durable: bool) -> None:
    fill(pg_url, 20)
    with psycopg.connect(pg_url) as conn:  # one explicit transaction per block
        if durable:
            conn.execute("SET headrace.durable_acks = 'on'")
        claimed = [row[0] for row in conn.execute(CLAIM, {"worker": "commit-test", "limit": 5}).fetchall()]
        (during_claim,) = conn.execute("SHOW synchronous_commit").fetchone() or ("",)
        conn.commit()
        (between,) = conn.execute("SHOW synchronous_commit").fetchone() or ("",)
        conn.commit()
        conn.execute("SELECT headrace_outbox_ack(%s, 'commit-test', now())", (claimed,)).fetchall()
        (during_ack,) = conn.execute("SHOW synchronous_commit").fetchone() or ("",)
        conn.commit()
    expected = "on" if durable else "off"
    assert (during_claim, during_ack) == (expected, expected)
    assert between == "on", "the relaxed commit must not leak past the claim's own transaction"
    store = OutboxStore.connect(pg_url)
    assert store.stats()["completed"] == 5, "acknowledged items are completed once committed"


@pytest.mark.parametrize("analyze", [False, True], ids=["fresh", "analyzed"])
def test_ack_and_next_claim_share_one_call_with_both_plans_index_driven(pg_url: str, analyze: bool) -> None:
    """The worker's one statement per batch: acknowledges the batch handled (rows returned as
    completed) and claims the next (rows returned as processing), both through an index."""
    fill(pg_url, 3000)
    if analyze:
        with psycopg.connect(pg_url, autocommit=True) as conn:
            conn.execute("ANALYZE headrace_outbox")
    plans: list[dict[str, Any]] = []
    with psycopg.connect(pg_url, autocommit=True) as conn:
        claimed = [row[0] for row in conn.execute(CLAIM, {"worker": "fused", "limit": 10}).fetchall()]
        explaining(conn, plans)
        for _ in range(7):
            rows = conn.execute(ACK_CLAIM, {"ack": claimed, "worker": "fused", "limit": 10}).fetchall()
            assert sorted(i for i, status in rows if status == "completed") == sorted(claimed)
            claimed = [i for i, status in rows if status == "processing"]
            assert len(claimed) == 10 and len(rows) == 20
        # An acknowledgement of items not held (here: by another worker) acknowledges nothing.
        rows = conn.execute(ACK_CLAIM, {"ack": claimed, "worker": "someone-else", "limit": 0}).fetchall()
        assert rows == []
    assert_index_driven([p["Plan"] for p in plans if p["Query Text"].lstrip().startswith("WITH picked")], 7)
    acks = [p["Plan"] for p in plans if p["Query Text"].lstrip().startswith("UPDATE")]
    assert len(acks) == 8
    for plan in acks:
        kinds = [(node["Node Type"], node.get("Index Name")) for node in nodes(plan)]
        assert {("Index Scan", "headrace_outbox_pkey"), ("Index Scan", "headrace_outbox_lease")} & set(kinds), kinds
        assert not {"Seq Scan", "Bitmap Heap Scan"} & {kind for kind, _ in kinds}, kinds
    stats = OutboxStore.connect(pg_url).stats()
    assert (stats["completed"], stats["processing"]) == (70, 10)
