"""OutboxWorker benchmark: drain N items through the worker with a sync and an async no-op
handler (batch 100), beside the raw-SQL baseline of bench_outbox.py (Python's own drivers running
the same claim + ack SQL), and the enqueue-to-handler latency of an idle PostgreSQL worker woken
by LISTEN/NOTIFY. Usage:

    .venv/bin/python benches/bench_worker.py [--n 50000] [--pg URL] [--latency-samples 200]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))

from bench_outbox import drain_psycopg, drain_sqlite3, drop_pg, fresh_pg, report, seed

from headrace import OutboxStore
from headrace.worker import OutboxWorker


def noop(item: Any) -> None:
    return None


async def anoop(item: Any) -> None:
    return None


def drain_worker(store: OutboxStore, handler: Any, batch: int) -> int:
    worker = OutboxWorker(store, {"bench": handler}, batch_size=batch, reaper_interval=None)
    return worker.run_until_empty().completed


def rate(fn: Any, *args: Any) -> float:
    start = time.perf_counter()
    count = fn(*args)
    return count / (time.perf_counter() - start)


def bench_engine(engine: str, make_url: Any, raw: Any, n: int, batch: int) -> dict[str, float]:
    results = {}
    for name, handler in (("sync", noop), ("async", anoop)):
        url, cleanup = make_url()
        try:
            results[name] = rate(drain_worker, seed(url, n), handler, batch)
        finally:
            cleanup()
    url, cleanup = make_url()
    try:
        seed(url, n)
        results["raw"] = rate(raw, url, batch)
    finally:
        cleanup()
    return results


def latency_pg(admin: str, samples: int) -> list[float]:
    url, schema = fresh_pg(admin)
    try:
        store = OutboxStore.connect(url)
        producer = OutboxStore.connect(url)
        arrived = threading.Event()
        sent_at: list[float] = [0.0]
        latencies: list[float] = []

        def handle(item: Any) -> None:
            latencies.append(time.perf_counter() - sent_at[0])
            arrived.set()

        worker = OutboxWorker(store, {"ping": handle}, poll_interval=30, reaper_interval=None)
        thread = threading.Thread(target=worker.run)
        thread.start()
        time.sleep(0.5)
        for _ in range(samples):
            arrived.clear()
            time.sleep(0.01)  # idle between items
            sent_at[0] = time.perf_counter()
            producer.enqueue("ping", {})
            if not arrived.wait(5):
                raise RuntimeError("the worker did not pick the item up within 5 s")
        worker.stop()
        thread.join()
        return latencies
    finally:
        drop_pg(admin, schema)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=50_000)
    parser.add_argument("--batch", type=int, default=100)
    parser.add_argument("--pg", default=os.environ.get("HEADRACE_TEST_PG_URL"))
    parser.add_argument("--latency-samples", type=int, default=200)
    args = parser.parse_args()
    print(f"worker drain: N={args.n}, batch={args.batch}, no-op handlers")

    tmp = tempfile.TemporaryDirectory()
    counter = iter(range(1_000_000))

    def sqlite_url() -> tuple[str, Any]:
        path = f"{tmp.name}/db{next(counter)}.db"
        return f"sqlite://{path}", lambda: None

    sqlite = bench_engine(
        "sqlite", sqlite_url, lambda url, b: drain_sqlite3(url.removeprefix("sqlite://"), b), args.n, args.batch
    )
    report("sqlite", "sqlite3", sqlite["sync"], sqlite["raw"], target=0.4, label="worker sync")
    report("sqlite", "sqlite3", sqlite["async"], sqlite["raw"], target=0.4, label="worker async")
    if not args.pg:
        print("postgres  skipped (pass --pg URL or set HEADRACE_TEST_PG_URL)")
        return

    def pg_url() -> tuple[str, Any]:
        url, schema = fresh_pg(args.pg)
        return url, lambda: drop_pg(args.pg, schema)

    pg = bench_engine("postgres", pg_url, drain_psycopg, args.n, args.batch)
    report("postgres", "psycopg", pg["sync"], pg["raw"], target=0.9, label="worker sync")
    report("postgres", "psycopg", pg["async"], pg["raw"], target=0.9, label="worker async")
    latencies = sorted(latency_pg(args.pg, args.latency_samples))
    p50 = statistics.median(latencies) * 1000
    p99 = latencies[int(len(latencies) * 0.99) - 1] * 1000
    verdict = "ok" if p50 <= 5 else "ABOVE TARGET"
    print(
        f"postgres  enqueue-to-handler latency (LISTEN/NOTIFY, idle worker): p50 {p50:.2f} ms, "
        f"p99 {p99:.2f} ms (target p50 <= 5 ms) {verdict}"
    )


if __name__ == "__main__":
    main()
