"""Outbox drain benchmark: claim_batch -> no-op Python loop -> mark_success_many.

Prints items/s for headrace beside a baseline that runs the same claim + ack SQL through
Python's own drivers (sqlite3 for SQLite, psycopg for PostgreSQL) in the same process, on
identical freshly-seeded tables. Usage:

    .venv/bin/python benches/bench_outbox.py [--n 50000] [--batch 100] [--pg URL]

PostgreSQL is measured when --pg or HEADRACE_TEST_PG_URL is given.
"""

from __future__ import annotations

import argparse
import os
import sqlite3
import tempfile
import time
import uuid
from collections.abc import Callable
from datetime import datetime, timedelta, timezone

from headrace import OutboxStore

SQLITE_CLAIM = """
UPDATE headrace_outbox SET status = 'processing', attempts = attempts + 1,
  lease_owner = ?1, lease_expires_at = ?2, updated_at = ?3
WHERE id IN (SELECT id FROM headrace_outbox WHERE status = 'pending' AND run_at <= ?3
             ORDER BY priority DESC, run_at, id LIMIT ?4)
RETURNING id, topic, payload, status, priority, attempts, max_attempts, run_at, lease_owner,
  lease_expires_at, last_error, dedupe_key, trace_id, created_at, updated_at
"""
SQLITE_ACK = """
UPDATE headrace_outbox SET status = 'completed', lease_owner = NULL, lease_expires_at = NULL,
  updated_at = ?1
WHERE id IN (SELECT value FROM json_each(?2)) AND status = 'processing' AND lease_owner = ?3
  AND lease_expires_at > ?1 RETURNING id
"""
PG_CLAIM = """
WITH picked AS (
  SELECT id FROM headrace_outbox WHERE status = 'pending' AND run_at <= %(now)s
  ORDER BY priority DESC, run_at, id LIMIT %(limit)s FOR UPDATE SKIP LOCKED)
UPDATE headrace_outbox o SET status = 'processing', attempts = o.attempts + 1,
  lease_owner = %(worker)s, lease_expires_at = %(expires)s, updated_at = %(now)s
FROM picked WHERE o.id = picked.id
RETURNING o.id, o.topic, o.payload::text, o.status, o.priority, o.attempts, o.max_attempts, o.run_at,
  o.lease_owner, o.lease_expires_at, o.last_error, o.dedupe_key, o.trace_id, o.created_at, o.updated_at
"""
PG_ACK = """
UPDATE headrace_outbox SET status = 'completed', lease_owner = NULL, lease_expires_at = NULL,
  updated_at = %(now)s
WHERE id = ANY(%(ids)s) AND status = 'processing' AND lease_owner = %(worker)s
  AND lease_expires_at > %(now)s RETURNING id
"""


def seed(url: str, n: int) -> OutboxStore:
    store = OutboxStore.connect(url)
    payload = {"device": "sw-01", "ports": list(range(8)), "note": "x" * 64}
    for start in range(0, n, 1000):
        store.enqueue_many([{"topic": "bench", "payload": payload}] * min(1000, n - start))
    return store


def drain_headrace(store: OutboxStore, batch: int) -> int:
    done = 0
    while items := store.claim_batch("bench-worker", batch):
        for _item in items:
            pass
        store.mark_success_many([item.id for item in items], "bench-worker")
        done += len(items)
    return done


def drain_headrace_overlapped(store: OutboxStore, batch: int) -> int:
    """The same loop over ``iter_claims``: the next claim runs while Python works."""
    done = 0
    with store.iter_claims("bench-worker", batch) as claims:
        for items in claims:
            for _item in items:
                pass
            store.mark_success_many([item.id for item in items], "bench-worker")
            done += len(items)
    return done


def drain_sqlite3(path: str, batch: int) -> int:
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")
    done = 0
    while True:
        now = datetime.now(timezone.utc)
        now_us = int(now.timestamp() * 1_000_000)
        conn.execute("BEGIN IMMEDIATE")
        rows = conn.execute(SQLITE_CLAIM, ("raw-worker", now_us + 300_000_000, now_us, batch)).fetchall()
        conn.execute("COMMIT")
        if not rows:
            return done
        for _row in rows:
            pass
        ids = "[" + ",".join(str(row[0]) for row in rows) + "]"
        conn.execute("BEGIN IMMEDIATE")
        conn.execute(SQLITE_ACK, (now_us, ids, "raw-worker")).fetchall()
        conn.execute("COMMIT")
        done += len(rows)


def drain_psycopg(url: str, batch: int) -> int:
    import psycopg

    done = 0
    with psycopg.connect(url, autocommit=True) as conn:
        while True:
            now = datetime.now(timezone.utc)
            params = {
                "now": now,
                "limit": batch,
                "worker": "raw-worker",
                "expires": now + timedelta(minutes=5),
            }
            rows = conn.execute(PG_CLAIM, params).fetchall()
            if not rows:
                return done
            for _row in rows:
                pass
            conn.execute(PG_ACK, {"now": now, "ids": [row[0] for row in rows], "worker": "raw-worker"}).fetchall()
            done += len(rows)


def timed(fn: Callable[..., int], *args: object) -> float:
    start = time.perf_counter()
    count = fn(*args)
    return count / (time.perf_counter() - start)


def fresh_pg(admin: str) -> tuple[str, str]:
    import psycopg

    schema = f"headrace_bench_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA {schema}")
    sep = "&" if "?" in admin else "?"
    return f"{admin}{sep}options=-c%20search_path%3D{schema}", schema


def drop_pg(admin: str, schema: str) -> None:
    import psycopg

    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f"DROP SCHEMA {schema} CASCADE")


def bench_sqlite(n: int, batch: int, rounds: int) -> tuple[float, float, float]:
    ours, overlapped, raw = [], [], []
    for _ in range(rounds):
        with tempfile.TemporaryDirectory() as tmp:
            ours.append(timed(drain_headrace, seed(f"sqlite://{tmp}/a.db", n), batch))
            overlapped.append(timed(drain_headrace_overlapped, seed(f"sqlite://{tmp}/c.db", n), batch))
            seed(f"sqlite://{tmp}/b.db", n)
            raw.append(timed(drain_sqlite3, f"{tmp}/b.db", batch))
    return max(ours), max(overlapped), max(raw)


def bench_pg(admin: str, n: int, batch: int, rounds: int) -> tuple[float, float, float]:
    ours, overlapped, raw = [], [], []
    for _ in range(rounds):
        schemas = []
        try:
            url_a, schema = fresh_pg(admin)
            schemas.append(schema)
            ours.append(timed(drain_headrace, seed(url_a, n), batch))
            url_c, schema = fresh_pg(admin)
            schemas.append(schema)
            overlapped.append(timed(drain_headrace_overlapped, seed(url_c, n), batch))
            url_b, schema = fresh_pg(admin)
            schemas.append(schema)
            seed(url_b, n)
            raw.append(timed(drain_psycopg, url_b, batch))
        finally:
            for schema in schemas:
                drop_pg(admin, schema)
    return max(ours), max(overlapped), max(raw)


def report(engine: str, baseline: str, ours: float, raw: float, target: float, label: str = "claim_batch") -> None:
    ratio = ours / raw
    verdict = "ok" if ratio >= target else "BELOW TARGET"
    print(
        f"{engine:<9} {label:<12} {ours:>10,.0f} items/s   {baseline:<8} {raw:>10,.0f} items/s   "
        f"ratio {ratio:4.2f} (target >= {target:.2f}) {verdict}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=50_000)
    parser.add_argument("--batch", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=3, help="best of this many runs per side")
    parser.add_argument("--pg", default=os.environ.get("HEADRACE_TEST_PG_URL"))
    args = parser.parse_args()
    print(f"outbox drain: N={args.n}, batch={args.batch}, best of {args.rounds}")
    ours, overlapped, raw = bench_sqlite(args.n, args.batch, args.rounds)
    report("sqlite", "sqlite3", ours, raw, target=0.5)
    report("sqlite", "sqlite3", overlapped, raw, target=0.5, label="iter_claims")
    if args.pg:
        ours, overlapped, raw = bench_pg(args.pg, args.n, args.batch, args.rounds)
        report("postgres", "psycopg", ours, raw, target=1.0)
        report("postgres", "psycopg", overlapped, raw, target=1.0, label="iter_claims")
    else:
        print("postgres  skipped (pass --pg URL or set HEADRACE_TEST_PG_URL)")


if __name__ == "__main__":
    main()
