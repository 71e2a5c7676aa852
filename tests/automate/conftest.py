"""Fixtures of the extension-point tests: fresh databases, stores and a state backend.

PostgreSQL tests read ``HEADRACE_TEST_PG_URL``; under ``CI=true`` they default to the local
server and fail (never skip) when it is unreachable.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from headrace.testing.postgres import fresh_pg_url as _fresh_pg_url

pytest_plugins = ["headrace.testing.fixtures", "pytester"]


def fresh_pg_url() -> str:
    """A URL on a new, empty PostgreSQL schema (skips only outside CI without a server)."""
    return _fresh_pg_url("headrace_automate")


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
