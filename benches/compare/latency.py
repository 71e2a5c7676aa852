"""Idle enqueue-to-handler latency on PostgreSQL, both systems woken by LISTEN/NOTIFY.

A worker waits idle (its polling interval far longer than the test); the main task enqueues one
item through a separate connection, stamped with ``time.perf_counter()``, and waits until the
handler has seen it before the next one, with a short idle gap between items. Reports p50 and
p99 in milliseconds over ``samples`` items.
"""

from __future__ import annotations

import asyncio
import statistics
import threading
import time
from typing import Any

IDLE_GAP = 0.02


def _summary(latencies: list[float]) -> dict[str, Any]:
    ordered = sorted(latencies)
    p99 = ordered[min(len(ordered) - 1, round(0.99 * (len(ordered) - 1)))]
    return {
        "value": statistics.median(ordered) * 1000,
        "p99": p99 * 1000,
        "unit": "ms",
        "count": len(ordered),
    }


def headrace_latency(url: str, samples: int) -> dict[str, Any]:
    from headrace import OutboxStore
    from headrace.worker import OutboxWorker

    seen = threading.Event()
    latencies: list[float] = []

    def handler(item: Any) -> None:
        latencies.append(time.perf_counter() - item.payload["t"])
        seen.set()

    worker = OutboxWorker(
        OutboxStore.connect(url), {"ping": handler}, batch_size=10, poll_interval=60.0, reaper_interval=None
    )
    runner = threading.Thread(target=worker.run, daemon=True)
    runner.start()
    producer = OutboxStore.connect(url)
    producer.enqueue("ping", {"t": time.perf_counter()})  # warm up: LISTEN is running
    assert seen.wait(30), "headrace never handled the warm-up item"
    latencies.clear()
    for _ in range(samples):
        seen.clear()
        time.sleep(IDLE_GAP)
        producer.enqueue("ping", {"t": time.perf_counter()})
        assert seen.wait(30), "headrace never handled an item"
    worker.stop()
    runner.join(30)
    return _summary(latencies)


def pgqueuer_latency(url: str, samples: int) -> dict[str, Any]:
    import json
    from datetime import timedelta

    from pg_queue import _pgqueuer_connect

    async def main() -> dict[str, Any]:
        from pgqueuer.db import AsyncpgDriver
        from pgqueuer.qm import QueueManager
        from pgqueuer.queries import Queries

        worker_conn = await _pgqueuer_connect(url)
        producer_conn = await _pgqueuer_connect(url)
        producer = Queries(AsyncpgDriver(producer_conn))
        await producer.install(create_schema=False)
        manager = QueueManager(Queries(AsyncpgDriver(worker_conn)))
        seen = asyncio.Event()
        latencies: list[float] = []

        @manager.entrypoint("ping")
        async def ping(job: Any) -> None:
            latencies.append(time.perf_counter() - json.loads(job.payload)["t"])
            seen.set()

        running = asyncio.create_task(manager.run(dequeue_timeout=timedelta(seconds=60), batch_size=10))
        await producer.enqueue("ping", json.dumps({"t": time.perf_counter()}).encode())
        await asyncio.wait_for(seen.wait(), 30)
        latencies.clear()
        for _ in range(samples):
            seen.clear()
            await asyncio.sleep(IDLE_GAP)
            await producer.enqueue("ping", json.dumps({"t": time.perf_counter()}).encode())
            await asyncio.wait_for(seen.wait(), 30)
        manager.shutdown.set()
        await asyncio.wait_for(running, 30)
        await worker_conn.close()
        await producer_conn.close()
        return _summary(latencies)

    return asyncio.run(main())


LATENCY = {"headrace": headrace_latency, "pgqueuer": pgqueuer_latency}
