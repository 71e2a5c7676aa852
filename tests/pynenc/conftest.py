"""Fixtures of the pynenc plugin tests: pynenc apps whose state backend is headrace.

pynenc's own exported state-backend suite (``pynenc_tests``, shipped in pynenc's wheel) asks
for an ``app_instance`` fixture; this one gives it an app on headrace's memory, SQLite and
PostgreSQL stores, chosen by configuration alone. pynenc's own fixtures come from
``pynenc_tests.conftest`` (loaded with ``-p pynenc_tests.conftest`` by ``scripts/test-pynenc``).

PostgreSQL reads ``HEADRACE_TEST_PG_URL``; under ``CI=true`` it defaults to the local server
and never skips.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from pynenc import Pynenc

from headrace.testing.postgres import fresh_pg_url as _fresh_pg_url


def fresh_pg_url() -> str:
    """A URL on a new, empty PostgreSQL schema (skips only outside CI without a server)."""
    return _fresh_pg_url("headrace_pynenc")


def store_url(kind: str, tmp_path: Path) -> str:
    if kind == "memory":
        return "memory://"
    if kind == "sqlite":
        return f"sqlite://{tmp_path / 'headrace-pynenc.db'}"
    return fresh_pg_url()


def headrace_config(url: str, **extra: Any) -> dict[str, Any]:
    """config_values of a pynenc app on memory components with headrace as state backend."""
    return {
        "app_id": f"headrace_pynenc_{uuid.uuid4().hex[:12]}",
        "orchestrator_cls": "MemOrchestrator",
        "broker_cls": "MemBroker",
        "client_data_store_cls": "MemClientDataStore",
        "trigger_cls": "MemTrigger",
        "state_backend_cls": "HeadraceStateBackend",
        "headrace_state_url": url,
        **extra,
    }


def close_backend(app: Pynenc) -> None:
    backend = app._state_backend
    if backend is not None and hasattr(backend, "close"):
        backend.purge()
        backend.close()


@pytest.fixture(params=["memory", "sqlite", "postgres"])
def store_kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def app_instance(store_kind: str, tmp_path: Path) -> Iterator[Pynenc]:
    """A pynenc app whose state backend is headrace on each store (pynenc's suite uses this)."""
    import headrace.pynenc  # noqa: F401  (registers HeadraceStateBackend for pynenc's lookup)

    app = Pynenc(config_values=headrace_config(store_url(store_kind, tmp_path)))
    yield app
    close_backend(app)
