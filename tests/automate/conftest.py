"""Fixtures of the extension-point tests: fresh databases, stores and a state backend.

PostgreSQL tests read ``HEADRACE_TEST_PG_URL``; under ``CI=true`` they default to the local
server and fail (never skip) when it is unreachable.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

pytest_plugins = ["headrace.testing.fixtures", "pytester"]

CI_PG_URL = "postgres://postgres@127.0.0.1:5432/test"


def pg_admin_url() -> str | None:
    url = os.environ.get("HEADRACE_TEST_PG_URL")
    if url:
        return url
    if os.environ.get("CI") == "true":
        return CI_PG_URL
    return None


def fresh_pg_url() -> str:
    admin = pg_admin_url()
    if admin is None:
        pytest.skip("PostgreSQL tests need HEADRACE_TEST_PG_URL (they always run under CI=true)")
    import psycopg

    schema = f"headrace_automate_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA {schema}")
    sep = "&" if "?" in admin else "?"
    return f"{admin}{sep}options=-c%20search_path%3D{schema}"


@pytest.fixture(params=["sqlite", "postgres"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite://{tmp_path / 'headrace.db'}"
    return fresh_pg_url()


@pytest.fixture
def stores(db_url: str) -> Iterator[tuple[Any, Any]]:
    """An outbox store (fast retries, short leases) and a state backend on one database."""
    from headrace.outbox import OutboxStore, RetryPolicy
    from headrace.state import StateBackend

    store = OutboxStore.connect(
        db_url,
        lease_seconds=2.0,
        retry=RetryPolicy(max_attempts=4, base_seconds=0.05, factor=1.0, max_seconds=0.1, jitter=0.0),
    )
    state = StateBackend.connect(db_url)
    yield store, state
    state.wait_for_all_async_operations()
    for closable in (store, state):
        close = getattr(closable, "close", None)
        if close is not None:
            close()
