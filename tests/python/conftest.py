"""Shared fixtures: a fresh database per test on SQLite, and on PostgreSQL when configured.

PostgreSQL tests read ``HEADRACE_TEST_PG_URL``; under ``CI=true`` they default to the local
server and fail (never skip) when it is unreachable.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from headrace.testing.postgres import fresh_pg_url as _fresh_pg_url


def fresh_pg_url() -> str:
    """A URL on a new, empty PostgreSQL schema (skips only outside CI without a server)."""
    return _fresh_pg_url("headrace_py")


def fresh_sqlite_url(tmp_path: Path) -> str:
    return f"sqlite://{tmp_path / 'headrace.db'}"


@pytest.fixture(params=["sqlite", "postgres"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A fresh database URL, once per engine."""
    if request.param == "sqlite":
        yield fresh_sqlite_url(tmp_path)
    else:
        yield fresh_pg_url()


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return fresh_sqlite_url(tmp_path)


@pytest.fixture(scope="session")
def otel_reader() -> object:
    """An in-memory OpenTelemetry metric reader on the process's one MeterProvider."""
    pytest.importorskip("opentelemetry.sdk", reason="OpenTelemetry export is active only when it is installed")
    from opentelemetry import metrics
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader

    reader = InMemoryMetricReader()
    metrics.set_meter_provider(MeterProvider(metric_readers=[reader]))
    return reader
