"""SQLite: drain and bulk enqueue, per system, each on its own fresh database file.

- ``headrace``: ``OutboxWorker`` with a no-op handler; ``enqueue_many`` in batches of 1 000.
- ``raw``: the minimal sqlite3 loop (one partial index, six columns), claim + ack per batch,
  each in ``BEGIN IMMEDIATE``, WAL and ``synchronous=NORMAL`` like headrace.
- ``executemany``: sqlite3 ``executemany`` of the same rows into headrace's own table, one
  transaction per batch of 1 000, JSON encoded by ``json.dumps``.
- ``huey``: huey's ``SqliteHuey`` storage, drained by ``dequeue`` + ``execute`` (its consumer's
  own path, without the consumer's polling sleeps); it enqueues one task per call.
"""

from __future__ import annotations

import json
import sqlite3
import time
from pathlib import Path
from typing import Any

from common import ENQUEUE_BATCH, PAYLOAD, Stopwatch, rate


def _chunks(n: int) -> list[int]:
    return [min(ENQUEUE_BATCH, n - start) for start in range(0, n, ENQUEUE_BATCH)]


def headrace_drain(directory: Path, n: int, batch: int) -> dict[str, Any]:
    from headrace import OutboxStore
    from headrace.worker import OutboxWorker

    store = OutboxStore.connect(f"sqlite://{directory / 'headrace.db'}")
    for size in _chunks(n):
        store.enqueue_many([{"topic": "bench", "payload": PAYLOAD}] * size)
    worker = OutboxWorker(store, {"bench": lambda item: None}, batch_size=batch, reaper_interval=None)
    with Stopwatch() as watch:
        report = worker.run_until_empty()
    assert report.completed == n, f"headrace completed {report.completed} of {n}"
    return rate(n, watch.seconds)


RAW_SCHEMA = """
CREATE TABLE raw_queue (
    id INTEGER PRIMARY KEY,
    status TEXT NOT NULL DEFAULT 'pending',
    payload TEXT NOT NULL,
    run_at INTEGER NOT NULL,
    lease_owner TEXT,
    lease_expires_at INTEGER
);
CREATE INDEX raw_queue_claim ON raw_queue (run_at, id) WHERE status = 'pending';
"""
RAW_CLAIM = """
UPDATE raw_queue SET status = 'processing', lease_owner = ?1, lease_expires_at = ?2
WHERE id IN (SELECT id FROM raw_queue WHERE status = 'pending' AND run_at <= ?3
             ORDER BY run_at, id LIMIT ?4)
RETURNING id, payload
"""
RAW_ACK = """
UPDATE raw_queue SET status = 'completed', lease_owner = NULL, lease_expires_at = NULL
WHERE id IN (SELECT value FROM json_each(?1)) AND lease_owner = ?2
"""


def _connect(path: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")
    return conn


def raw_drain(directory: Path, n: int, batch: int) -> dict[str, Any]:
    conn = _connect(directory / "raw.db")
    conn.executescript(RAW_SCHEMA)
    now_us = int(time.time() * 1_000_000)
    conn.execute("BEGIN")
    conn.executemany("INSERT INTO raw_queue (payload, run_at) VALUES (?, ?)", [(json.dumps(PAYLOAD), now_us)] * n)
    conn.execute("COMMIT")
    done = 0
    with Stopwatch() as watch:
        while True:
            now_us = int(time.time() * 1_000_000)
            conn.execute("BEGIN IMMEDIATE")
            rows = conn.execute(RAW_CLAIM, ("raw", now_us + 300_000_000, now_us, batch)).fetchall()
            conn.execute("COMMIT")
            if not rows:
                break
            for _row in rows:
                pass
            conn.execute("BEGIN IMMEDIATE")
            conn.execute(RAW_ACK, (json.dumps([row[0] for row in rows]), "raw"))
            conn.execute("COMMIT")
            done += len(rows)
    conn.close()
    assert done == n, f"the raw loop drained {done} of {n}"
    return rate(n, watch.seconds)


def huey_drain(directory: Path, n: int, batch: int) -> dict[str, Any]:
    del batch  # huey dequeues one task at a time
    from huey import SqliteHuey

    huey = SqliteHuey(filename=str(directory / "huey.db"), results=False)
    done = 0

    @huey.task()
    def bench(payload: dict[str, Any]) -> None:
        nonlocal done
        done += 1

    for _ in range(n):
        bench(PAYLOAD)
    with Stopwatch() as watch:
        while (task := huey.dequeue()) is not None:
            huey.execute(task)
    assert done == n, f"huey ran {done} of {n}"
    return rate(n, watch.seconds)


def headrace_enqueue(directory: Path, n: int) -> dict[str, Any]:
    from headrace import OutboxStore

    store = OutboxStore.connect(f"sqlite://{directory / 'headrace.db'}")
    batches = [[{"topic": "bench", "payload": PAYLOAD}] * size for size in _chunks(n)]
    with Stopwatch() as watch:
        for items in batches:
            store.enqueue_many(items)
    assert store.stats()["pending"] == n
    return rate(n, watch.seconds)


EXECUTEMANY_INSERT = """
INSERT INTO headrace_outbox (topic, payload, priority, max_attempts, run_at, dedupe_key, trace_id,
                             created_at, updated_at)
VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)
"""


def executemany_enqueue(directory: Path, n: int) -> dict[str, Any]:
    from headrace import OutboxStore

    path = directory / "executemany.db"
    OutboxStore.connect(f"sqlite://{path}")  # the same table and indexes as headrace
    conn = _connect(path)
    batches = [[PAYLOAD] * size for size in _chunks(n)]
    with Stopwatch() as watch:
        for payloads in batches:
            now_us = int(time.time() * 1_000_000)
            rows = [("bench", json.dumps(p), 0, 5, now_us, None, None, now_us, now_us) for p in payloads]
            conn.execute("BEGIN IMMEDIATE")
            conn.executemany(EXECUTEMANY_INSERT, rows)
            conn.execute("COMMIT")
    (count,) = conn.execute("SELECT count(*) FROM headrace_outbox").fetchone()
    conn.close()
    assert count == n
    return rate(n, watch.seconds)


DRAIN = {"headrace": headrace_drain, "raw": raw_drain, "huey": huey_drain}
ENQUEUE = {"headrace": headrace_enqueue, "executemany": executemany_enqueue}
