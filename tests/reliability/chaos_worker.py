"""One chaos worker process: drains the outbox, recording every execution, until killed.

Usage: ``python chaos_worker.py OUTBOX_URL RECORDS LEASE_SECONDS``. ``RECORDS`` is where each
execution is written before the handler returns: a PostgreSQL URL (table ``chaos_executions``)
or a SQLite file path. The parent kills this process with SIGKILL at random moments.
"""

from __future__ import annotations

import os
import sqlite3
import sys
import time
from typing import Any

from headrace import OutboxStore
from headrace.worker import OutboxWorker

HANDLER_SECONDS = 0.02  # ~10 s of work for 2 000 items on 4 workers: several kills land


def recorder(records: str) -> Any:
    if records.startswith("postgres"):
        import psycopg

        conn = psycopg.connect(records, autocommit=True)

        def record_pg(item_id: int) -> None:
            conn.execute("INSERT INTO chaos_executions (item_id, pid) VALUES (%s, %s)", (item_id, os.getpid()))

        return record_pg
    lite = sqlite3.connect(records, timeout=30, isolation_level=None, check_same_thread=False)

    def record_sqlite(item_id: int) -> None:
        lite.execute("INSERT INTO chaos_executions (item_id, pid) VALUES (?, ?)", (item_id, os.getpid()))

    return record_sqlite


def main() -> None:
    outbox_url, records, lease = sys.argv[1], sys.argv[2], float(sys.argv[3])
    record = recorder(records)

    def handle(item: Any) -> None:
        record(item.id)
        time.sleep(HANDLER_SECONDS)

    store = OutboxStore.connect(outbox_url, lease_seconds=lease)
    worker = OutboxWorker(
        store,
        {"chaos": handle},
        worker_id=f"chaos-{os.getpid()}",
        batch_size=20,
        poll_interval=0.2,
        reaper_interval=0.5,
    )
    print("ready", flush=True)
    worker.run()


if __name__ == "__main__":
    main()
