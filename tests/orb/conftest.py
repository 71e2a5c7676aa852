"""Fixtures of the orb-worker drop-in tests: our orb-shaped backends importable, headrace's
``worker`` modules installed, a recording Diode server, fresh databases (SQLite, and
PostgreSQL when ``HEADRACE_TEST_PG_URL`` is set; always under ``CI=true``)."""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from diode_server import RecordingDiode
from orb_helpers import fresh_pg_url

from headrace.orb import install_worker_modules

install_worker_modules()


@pytest.fixture(params=["sqlite", "postgres"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite://{tmp_path / 'headrace.db'}"
    return fresh_pg_url()


@pytest.fixture
def diode() -> Iterator[RecordingDiode]:
    with RecordingDiode() as server:
        yield server


@pytest.fixture(autouse=True)
def _root_logging_restored() -> Iterator[None]:
    """Takes off the root logger what the test added: ``headrace.orb.cli.main`` run in-process
    configures it (``basicConfig(force=True)``) with a handler on the test's captured stderr,
    which pytest closes, so a later test's log record would hit a closed stream."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    for handler in root.handlers[:]:
        if handler not in handlers:
            root.removeHandler(handler)
    root.setLevel(level)
