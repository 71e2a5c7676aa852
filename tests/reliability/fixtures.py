"""Database fixtures of the reliability suite (the same rules as ``tests/python``): a fresh
PostgreSQL schema per test from ``HEADRACE_TEST_PG_URL``, which under ``CI=true`` defaults to
the local server and must be reachable (never skipped)."""

from __future__ import annotations

from headrace.testing.postgres import fresh_pg_url as _fresh_pg_url


def fresh_pg_url() -> str:
    """A URL on a new, empty PostgreSQL schema (skips only outside CI without a server)."""
    return _fresh_pg_url("headrace_rel")
