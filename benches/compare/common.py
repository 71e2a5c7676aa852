"""Helpers shared by the side-by-side measurements: fresh PostgreSQL schemas, the payload, timing."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any
from urllib.parse import quote

#: The one payload every system carries (about 150 bytes of JSON).
PAYLOAD: dict[str, Any] = {"device": "sw-01", "ports": list(range(8)), "note": "x" * 64}
PAYLOAD_BYTES = json.dumps(PAYLOAD).encode()
#: Enqueue batch size for every system (the issue's workload: batches of 1 000).
ENQUEUE_BATCH = 1000


@contextmanager
def fresh_schema(admin_url: str, prefix: str) -> Iterator[tuple[str, str]]:
    """A new, empty schema; yields (URL whose search_path is that schema, schema name)."""
    import psycopg

    schema = f"cmp_{prefix.replace('-', '_')}_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA {schema}")
    sep = "&" if "?" in admin_url else "?"
    url = f"{admin_url}{sep}options={quote(f'-c search_path={schema}')}"
    try:
        yield url, schema
    finally:
        with psycopg.connect(admin_url, autocommit=True) as conn:
            conn.execute(f"DROP SCHEMA {schema} CASCADE")


def prepare_tables(url: str, tables: list[str], analyzed: bool) -> None:
    """Pins the scenario: autovacuum off on the queue tables, then ANALYZE them or leave them fresh."""
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        for table in tables:
            conn.execute(f"ALTER TABLE {table} SET (autovacuum_enabled = off)")
            if analyzed:
                conn.execute(f"ANALYZE {table}")
            else:
                (reltuples,) = conn.execute(
                    "SELECT reltuples FROM pg_class WHERE oid = %s::regclass", (table,)
                ).fetchone() or (0,)
                # reltuples is -1 until the first VACUUM or ANALYZE: the table is really fresh.
                assert reltuples < 0, f"{table} was analyzed before a fresh-table run"


class Stopwatch:
    """Times the body of a ``with`` block."""

    def __enter__(self) -> Stopwatch:
        self.start = time.perf_counter()
        return self

    def __exit__(self, *exc: object) -> None:
        self.seconds = time.perf_counter() - self.start


def rate(count: int, seconds: float) -> dict[str, Any]:
    return {"value": count / seconds, "unit": "items/s", "count": count, "seconds": seconds}


def dsn_and_schema(url: str) -> tuple[str, str]:
    """Splits a URL made by :func:`fresh_schema` back into the plain DSN and the schema name."""
    from urllib.parse import unquote

    dsn, _, options = url.partition("?options=")
    if not options:
        dsn, _, options = url.partition("&options=")
    return dsn, unquote(options).removeprefix("-c search_path=")


def with_setting(url: str, name: str, value: str) -> str:
    """The URL with one more ``-c name=value`` in its connection options."""
    dsn, schema = dsn_and_schema(url)
    sep = "&" if "?" in dsn else "?"
    return f"{dsn}{sep}options={quote(f'-c search_path={schema} -c {name}={value}')}"
