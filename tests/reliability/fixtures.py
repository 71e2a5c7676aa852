"""Database fixtures of the reliability suite (the same rules as ``tests/python``): a fresh
PostgreSQL schema per test from ``HEADRACE_TEST_PG_URL``, which under ``CI=true`` defaults to
the local server and must be reachable (never skipped)."""

from __future__ import annotations

import os
import uuid

import pytest

CI_PG_URL = "postgres://postgres@127.0.0.1:5432/test"


def pg_admin_url() -> str | None:
    url = os.environ.get("HEADRACE_TEST_PG_URL")
    if url:
        return url
    if os.environ.get("CI") == "true":
        return CI_PG_URL
    return None


def fresh_pg_url() -> str:
    """A URL on a new, empty PostgreSQL schema (skips only outside CI without a server)."""
    admin = pg_admin_url()
    if admin is None:
        pytest.skip("PostgreSQL tests need HEADRACE_TEST_PG_URL (they always run under CI=true)")
    import psycopg

    schema = f"headrace_rel_{uuid.uuid4().hex[:16]}"
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA {schema}")
    sep = "&" if "?" in admin else "?"
    return f"{admin}{sep}options=-c%20search_path%3D{schema}"
