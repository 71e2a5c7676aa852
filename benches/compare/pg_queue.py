"""PostgreSQL: drain (claim -> no-op handler -> acknowledge) and bulk enqueue, per system.

Every function takes a URL on a fresh, empty schema, sets its system up outside the timed part,
and returns the rate of the timed part. Systems:

- ``headrace``: ``OutboxWorker`` (Rust claim/ack lanes, a no-op Python handler), ``enqueue_many``.
- ``pgqueuer``: ``QueueManager.run(mode=drain)`` over asyncpg, ``Queries.enqueue`` with lists.
- ``procrastinate``: ``run_worker_async(wait=False)``, ``batch_defer_async``. Procrastinate has
  no batch size: it fetches one job per round trip whatever the row's batch says.
- ``headrace-durable``: the same worker with ``headrace.durable_acks = on`` (claims and acks
  wait for the WAL flush, as every peer's do).
- ``raw``: the minimal loop: one partial index, six columns, psycopg, claim + ack per batch.
"""

from __future__ import annotations

import asyncio
from typing import Any

from common import ENQUEUE_BATCH, PAYLOAD, PAYLOAD_BYTES, Stopwatch, prepare_tables, rate


def _chunks(n: int) -> list[int]:
    return [min(ENQUEUE_BATCH, n - start) for start in range(0, n, ENQUEUE_BATCH)]


# ---------------------------------------------------------------- headrace


def headrace_fill(url: str, n: int) -> Any:
    from headrace import OutboxStore

    store = OutboxStore.connect(url)
    for size in _chunks(n):
        store.enqueue_many([{"topic": "bench", "payload": PAYLOAD}] * size)
    return store


def headrace_drain(url: str, n: int, batch: int, analyzed: bool) -> dict[str, Any]:
    from headrace.worker import OutboxWorker

    store = headrace_fill(url, n)
    prepare_tables(url, ["headrace_outbox"], analyzed)
    worker = OutboxWorker(store, {"bench": lambda item: None}, batch_size=batch, reaper_interval=None)
    with Stopwatch() as watch:
        report = worker.run_until_empty()
    assert report.completed == n, f"headrace completed {report.completed} of {n}"
    return rate(n, watch.seconds)


def headrace_durable_drain(url: str, n: int, batch: int, analyzed: bool) -> dict[str, Any]:
    """headrace with ``headrace.durable_acks = on``: claims and acks wait for the disk like the peers'."""
    from common import with_setting

    return headrace_drain(with_setting(url, "headrace.durable_acks", "on"), n, batch, analyzed)


def headrace_enqueue(url: str, n: int) -> dict[str, Any]:
    from headrace import OutboxStore

    store = OutboxStore.connect(url)
    batches = [[{"topic": "bench", "payload": PAYLOAD}] * size for size in _chunks(n)]
    with Stopwatch() as watch:
        for items in batches:
            store.enqueue_many(items)
    assert store.stats()["pending"] == n
    return rate(n, watch.seconds)


# ---------------------------------------------------------------- pgqueuer


async def _pgqueuer_connect(url: str) -> Any:
    import asyncpg
    from common import dsn_and_schema

    dsn, schema = dsn_and_schema(url)
    return await asyncpg.connect(dsn, server_settings={"search_path": schema})


async def _pgqueuer_install_and_fill(url: str, n: int) -> Any:
    from pgqueuer.db import AsyncpgDriver
    from pgqueuer.queries import Queries

    conn = await _pgqueuer_connect(url)
    queries = Queries(AsyncpgDriver(conn))
    await queries.install(create_schema=False)
    for size in _chunks(n):
        await queries.enqueue(["bench"] * size, [PAYLOAD_BYTES] * size, [0] * size)
    return conn


def pgqueuer_drain(url: str, n: int, batch: int, analyzed: bool) -> dict[str, Any]:
    async def main() -> dict[str, Any]:
        from pgqueuer.db import AsyncpgDriver
        from pgqueuer.qm import QueueManager
        from pgqueuer.queries import Queries
        from pgqueuer.types import QueueExecutionMode

        conn = await _pgqueuer_install_and_fill(url, n)
        prepare_tables(url, ["pgqueuer"], analyzed)
        manager = QueueManager(Queries(AsyncpgDriver(conn)))
        done = 0

        @manager.entrypoint("bench")
        async def bench(job: Any) -> None:
            nonlocal done
            done += 1

        with Stopwatch() as watch:
            await manager.run(batch_size=batch, mode=QueueExecutionMode.drain)
        left = await conn.fetchval("SELECT count(*) FROM pgqueuer")
        await conn.close()
        assert done == n and left == 0, f"pgqueuer ran {done} of {n}, {left} left"
        return rate(n, watch.seconds)

    return asyncio.run(main())


def pgqueuer_enqueue(url: str, n: int) -> dict[str, Any]:
    async def main() -> dict[str, Any]:
        from pgqueuer.db import AsyncpgDriver
        from pgqueuer.queries import Queries

        conn = await _pgqueuer_connect(url)
        queries = Queries(AsyncpgDriver(conn))
        await queries.install(create_schema=False)
        sizes = _chunks(n)
        with Stopwatch() as watch:
            for size in sizes:
                await queries.enqueue(["bench"] * size, [PAYLOAD_BYTES] * size, [0] * size)
        count = await conn.fetchval("SELECT count(*) FROM pgqueuer")
        await conn.close()
        assert count == n
        return rate(n, watch.seconds)

    return asyncio.run(main())


# ---------------------------------------------------------------- procrastinate


def _procrastinate_app(url: str) -> Any:
    import procrastinate
    from common import dsn_and_schema

    dsn, schema = dsn_and_schema(url)
    app = procrastinate.App(
        connector=procrastinate.PsycopgConnector(conninfo=dsn, kwargs={"options": f"-c search_path={schema}"})
    )
    return app


def procrastinate_drain(url: str, n: int, batch: int, analyzed: bool) -> dict[str, Any]:
    del batch  # procrastinate fetches one job per round trip

    async def main() -> dict[str, Any]:
        app = _procrastinate_app(url)
        done = 0

        @app.task(name="bench", queue="bench")
        async def bench(**kwargs: Any) -> None:
            nonlocal done
            done += 1

        async with app.open_async():
            await app.schema_manager.apply_schema_async()
            for size in _chunks(n):
                await bench.batch_defer_async(*([PAYLOAD] * size))
            prepare_tables(url, ["procrastinate_jobs"], analyzed)
            with Stopwatch() as watch:
                await app.run_worker_async(wait=False, install_signal_handlers=False, queues=["bench"])
        assert done == n, f"procrastinate ran {done} of {n}"
        return rate(n, watch.seconds)

    return asyncio.run(main())


def procrastinate_enqueue(url: str, n: int) -> dict[str, Any]:
    async def main() -> dict[str, Any]:
        app = _procrastinate_app(url)

        @app.task(name="bench", queue="bench")
        async def bench(**kwargs: Any) -> None:
            pass

        async with app.open_async():
            await app.schema_manager.apply_schema_async()
            sizes = _chunks(n)
            with Stopwatch() as watch:
                for size in sizes:
                    await bench.batch_defer_async(*([PAYLOAD] * size))
        return rate(n, watch.seconds)

    return asyncio.run(main())


# ---------------------------------------------------------------- the minimal raw loop

RAW_SCHEMA = """
CREATE TABLE raw_queue (
    id BIGSERIAL PRIMARY KEY,
    status TEXT NOT NULL DEFAULT 'pending',
    payload JSONB NOT NULL,
    run_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    lease_owner TEXT,
    lease_expires_at TIMESTAMPTZ
);
CREATE INDEX raw_queue_claim ON raw_queue (run_at, id) WHERE status = 'pending';
"""
RAW_CLAIM = """
WITH picked AS (
  SELECT id FROM raw_queue WHERE status = 'pending' AND run_at <= now()
  ORDER BY run_at, id LIMIT %(limit)s FOR UPDATE SKIP LOCKED)
UPDATE raw_queue q SET status = 'processing', lease_owner = %(worker)s,
  lease_expires_at = now() + interval '5 minutes'
FROM picked WHERE q.id = picked.id RETURNING q.id, q.payload
"""
RAW_ACK = """
UPDATE raw_queue SET status = 'completed', lease_owner = NULL, lease_expires_at = NULL
WHERE id = ANY(%(ids)s) AND lease_owner = %(worker)s
"""


def raw_drain(url: str, n: int, batch: int, analyzed: bool) -> dict[str, Any]:
    import psycopg
    from psycopg.types.json import Jsonb

    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(RAW_SCHEMA)
        with conn.cursor() as cur:
            for size in _chunks(n):
                cur.executemany("INSERT INTO raw_queue (payload) VALUES (%s)", [(Jsonb(PAYLOAD),)] * size)
    prepare_tables(url, ["raw_queue"], analyzed)
    done = 0
    with psycopg.connect(url, autocommit=True) as conn, Stopwatch() as watch:
        while rows := conn.execute(RAW_CLAIM, {"limit": batch, "worker": "raw"}).fetchall():
            for _row in rows:
                pass
            conn.execute(RAW_ACK, {"ids": [row[0] for row in rows], "worker": "raw"})
            done += len(rows)
    assert done == n, f"the raw loop drained {done} of {n}"
    return rate(n, watch.seconds)


DRAIN = {
    "headrace": headrace_drain,
    "headrace-durable": headrace_durable_drain,
    "pgqueuer": pgqueuer_drain,
    "procrastinate": procrastinate_drain,
    "raw": raw_drain,
}
ENQUEUE = {
    "headrace": headrace_enqueue,
    "pgqueuer": pgqueuer_enqueue,
    "procrastinate": procrastinate_enqueue,
}
