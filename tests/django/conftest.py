"""Shared fixtures of the Django suites. Run with:
``pytest tests/django -p pytest_django --ds=headrace_test_settings -o pythonpath=tests/django``
(``scripts/test-django`` does), with ``HEADRACE_TEST_DB=sqlite|postgres``."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

HERE = Path(__file__).resolve().parent


def pytest_configure(config: Any) -> None:
    # Installed headrace registers the plugin through its pytest11 entry point; a checkout on
    # PYTHONPATH (scripts/test-django's venvs) does not.
    if not config.pluginmanager.has_plugin("headrace_django"):
        config.pluginmanager.import_plugin("headrace.django.pytest_plugin")


def engine() -> str:
    return os.environ.get("HEADRACE_TEST_DB", "sqlite")


@pytest.fixture(autouse=True)
def _fresh_headrace_caches() -> Iterator[None]:
    yield
    from headrace.django import db, results

    results.reset()
    db.reset()


@pytest.fixture
def clean_outbox(transactional_db: Any) -> Iterator[None]:
    """Empties the core's tables around a test that commits (Django's flush skips them)."""
    from django.db import connection

    def empty() -> None:
        with connection.cursor() as cursor:
            cursor.execute("DELETE FROM headrace_outbox")

    empty()
    yield
    empty()


def manage(*args: str, env: dict[str, str] | None = None, **kwargs: Any) -> subprocess.Popen[str]:
    """Starts ``manage.py`` of the test project on the current test database."""
    from django.db import connection

    full_env = {**os.environ, "HEADRACE_TEST_DB_NAME": str(connection.settings_dict["NAME"]), **(env or {})}
    return subprocess.Popen(
        [sys.executable, str(HERE / "manage.py"), *args],
        env=full_env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        **kwargs,
    )


@pytest.fixture
def file_database(transactional_db: Any) -> None:
    """Skips (outside CI) or fails (in CI) when the test database is Django's in-memory SQLite,
    which another process cannot open; scripts/test-django runs these tests on a file."""
    from django.db import connection

    if connection.vendor == "sqlite" and connection.is_in_memory_db():
        message = "needs a file-backed test database (HEADRACE_TEST_SQLITE_FILE)"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
