"""Runs ONE measurement in its own process and prints its result as JSON on the last line.

    python benches/compare/child.py KIND SYSTEM '{"n": 10000, ...}'

KIND is one of ``pg_drain``, ``pg_enqueue``, ``pg_latency``, ``sqlite_drain``,
``sqlite_enqueue``, or a hook kind from ``hooks.py``. PostgreSQL kinds read the admin URL from
``HEADRACE_BENCH_PG_URL`` and work in a fresh schema that is dropped afterwards.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
from pathlib import Path
from typing import Any


def measure(kind: str, system: str, params: dict[str, Any]) -> dict[str, Any]:
    import hooks
    import latency
    import pg_queue
    import sqlite_queue
    from common import fresh_schema

    admin = os.environ.get("HEADRACE_BENCH_PG_URL", "")
    if kind.startswith("pg_"):
        with fresh_schema(admin, system) as (url, _schema):
            if kind == "pg_drain":
                return pg_queue.DRAIN[system](url, params["n"], params["batch"], params["analyzed"])
            if kind == "pg_enqueue":
                return pg_queue.ENQUEUE[system](url, params["n"])
            if kind == "pg_latency":
                return latency.LATENCY[system](url, params["samples"])
    if kind.startswith("sqlite_"):
        with tempfile.TemporaryDirectory(prefix="headrace-compare-") as tmp:
            if kind == "sqlite_drain":
                return sqlite_queue.DRAIN[system](Path(tmp), params["n"], params["batch"])
            if kind == "sqlite_enqueue":
                return sqlite_queue.ENQUEUE[system](Path(tmp), params["n"])
    if kind in hooks.KINDS:
        return hooks.KINDS[kind](system, params, admin)
    raise SystemExit(f"unknown measurement kind {kind!r}")


def main() -> None:
    kind, system, params = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
    print(json.dumps(measure(kind, system, params)))


if __name__ == "__main__":
    main()
