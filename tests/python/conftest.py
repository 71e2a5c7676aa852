"""Shared fixtures: a fresh database per test on SQLite, and on PostgreSQL when configured.

PostgreSQL tests read ``HEADRACE_TEST_PG_URL``; under ``CI=true`` they default to the local
server and fail (never skip) when it is unreachable.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

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

    schema = f"headrace_py_{uuid.uuid4().hex[:16]}"
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA {schema}")
    sep = "&" if "?" in admin else "?"
    return f"{admin}{sep}options=-c%20search_path%3D{schema}"


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
