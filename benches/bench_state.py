"""State backend throughput: N invocations x (upsert + 3 history entries + result), then
wait_for_all_async_operations, on SQLite and PostgreSQL, beside a baseline doing the same work
with one Python ``sqlite3`` transaction per call.

The baseline uses the same durability settings as headrace's SQLite store (WAL,
synchronous=NORMAL) and a comparable schema (invocations + indexed history), so the ratio
measures the write-behind batching and the Rust core, not a weaker fsync policy.

Usage: python benches/bench_state.py [--n 100000] [--baseline-n 20000] [--pg-url URL]
PostgreSQL runs when --pg-url or HEADRACE_TEST_PG_URL is set (a fresh schema is used).
"""

from __future__ import annotations

import argparse
import json
import os
import sqlite3
import tempfile
import time
import uuid
from datetime import datetime, timezone

from headrace.state import Invocation, InvocationStatus, StateBackend

OPS_PER_INVOCATION = 5
STATUSES = (InvocationStatus.PENDING, InvocationStatus.RUNNING, InvocationStatus.SUCCESS)


def make_invocations(n: int) -> list[Invocation]:
    return [Invocation("bench.task", {"n": i, "payload": "x" * 16}) for i in range(n)]


def run_headrace(url: str, n: int) -> float:
    """ops/s of the whole workload through StateBackend, durable at the end."""
    invocations = make_invocations(n)
    state = StateBackend.connect(url)
    start = time.perf_counter()
    for inv in invocations:
        state.upsert_invocation(inv)
        for status in STATUSES:
            state.add_history(inv, status)
        state.set_result(inv, {"ok": True, "n": inv.arguments["n"]})
    queued = time.perf_counter() - start
    state.wait_for_all_async_operations()
    elapsed = time.perf_counter() - start
    state.close()
    print(f"    queued in {queued:.2f}s, durable after {elapsed:.2f}s")
    return n * OPS_PER_INVOCATION / elapsed


BASELINE_SCHEMA = """
CREATE TABLE invocations (
    invocation_id TEXT PRIMARY KEY, task_id TEXT NOT NULL, arguments TEXT NOT NULL,
    status TEXT NOT NULL, result TEXT, created_at TEXT NOT NULL);
CREATE INDEX invocations_task ON invocations (task_id, created_at);
CREATE TABLE history (
    seq INTEGER PRIMARY KEY, invocation_id TEXT NOT NULL, timestamp TEXT NOT NULL,
    status TEXT, execution_context TEXT);
CREATE INDEX history_invocation ON history (invocation_id, timestamp);
"""


def run_baseline(path: str, n: int) -> float:
    """ops/s of the same workload with one sqlite3 transaction per call."""
    invocations = make_invocations(n)
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")
    conn.executescript(BASELINE_SCHEMA)

    def transaction(sql: str, params: tuple) -> None:
        conn.execute("BEGIN IMMEDIATE")
        conn.execute(sql, params)
        conn.execute("COMMIT")

    start = time.perf_counter()
    for inv in invocations:
        transaction(
            "INSERT INTO invocations (invocation_id, task_id, arguments, status, created_at) "
            "VALUES (?, ?, ?, ?, ?) ON CONFLICT (invocation_id) DO UPDATE SET "
            "arguments = excluded.arguments, status = excluded.status",
            (
                inv.invocation_id,
                inv.task_id,
                json.dumps(inv.arguments),
                inv.status.value,
                inv.created_at.isoformat(),
            ),
        )
        for status in STATUSES:
            conn.execute("BEGIN IMMEDIATE")
            conn.execute(
                "INSERT INTO history (invocation_id, timestamp, status) VALUES (?, ?, ?)",
                (inv.invocation_id, datetime.now(timezone.utc).isoformat(), status.value),
            )
            conn.execute("UPDATE invocations SET status = ? WHERE invocation_id = ?", (status.value, inv.invocation_id))
            conn.execute("COMMIT")
        transaction(
            "UPDATE invocations SET result = ? WHERE invocation_id = ?",
            (json.dumps({"ok": True, "n": inv.arguments["n"]}), inv.invocation_id),
        )
    elapsed = time.perf_counter() - start
    conn.close()
    return n * OPS_PER_INVOCATION / elapsed


def fresh_pg_url(admin: str) -> str:
    import psycopg

    schema = f"headrace_bench_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA {schema}")
    sep = "&" if "?" in admin else "?"
    return f"{admin}{sep}options=-c%20search_path%3D{schema}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--n", type=int, default=100_000, help="invocations (default 100000)")
    parser.add_argument(
        "--baseline-n",
        type=int,
        default=20_000,
        help="invocations for the (slow) baseline; its ops/s is a rate, so fewer suffice",
    )
    parser.add_argument("--pg-url", default=os.environ.get("HEADRACE_TEST_PG_URL"))
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        print(f"baseline: Python sqlite3, one transaction per call ({args.baseline_n} invocations)")
        baseline = run_baseline(os.path.join(tmp, "baseline.db"), args.baseline_n)
        print(f"    {baseline:,.0f} ops/s")

        print(f"headrace SQLite ({args.n} invocations x {OPS_PER_INVOCATION} ops)")
        sqlite_ops = run_headrace(f"sqlite://{os.path.join(tmp, 'state.db')}", args.n)
        print(f"    {sqlite_ops:,.0f} ops/s = {sqlite_ops / baseline:.1f}x baseline")

    if args.pg_url:
        print(f"headrace PostgreSQL ({args.n} invocations x {OPS_PER_INVOCATION} ops)")
        pg_ops = run_headrace(fresh_pg_url(args.pg_url), args.n)
        print(f"    {pg_ops:,.0f} ops/s = {pg_ops / baseline:.1f}x baseline")
    else:
        print("headrace PostgreSQL: skipped (set --pg-url or HEADRACE_TEST_PG_URL)")


if __name__ == "__main__":
    main()
