"""Settings for the Django suites (tests/django, and reusable by tests/django_ops).

``HEADRACE_TEST_DB=sqlite`` (default) or ``postgres`` (from ``HEADRACE_TEST_PG_URL``).
SQLite tests use Django's default in-memory test database unless ``HEADRACE_TEST_SQLITE_FILE``
names a file (the worker tests need one: only Django's connection sees an in-memory database).
"""

from __future__ import annotations

import json
import os
import tempfile
from urllib.parse import unquote, urlsplit

SECRET_KEY = "headrace-tests"
DEBUG = False
USE_TZ = True
TIME_ZONE = "UTC"
ROOT_URLCONF = "shop.urls"
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
ALLOWED_HOSTS = ["*"]

INSTALLED_APPS = [
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "headrace.django",
    "shop",
]
MIDDLEWARE: list[str] = []

DB = os.environ.get("HEADRACE_TEST_DB", "sqlite")


def _postgres(url: str) -> dict[str, object]:
    parts = urlsplit(url)
    return {
        "ENGINE": "django.db.backends.postgresql",
        "NAME": parts.path.lstrip("/") or "postgres",
        "USER": unquote(parts.username or ""),
        "PASSWORD": unquote(parts.password or ""),
        "HOST": parts.hostname or "",
        "PORT": str(parts.port or ""),
        # One test database per suite run: the Django runner appends its own prefix.
        "TEST": {"NAME": f"test_{parts.path.lstrip('/') or 'postgres'}_django"},
    }


if DB == "postgres":
    DATABASES = {
        "default": _postgres(os.environ.get("HEADRACE_TEST_PG_URL", "postgres://postgres@127.0.0.1:5432/test"))
    }
else:
    import django

    sqlite_file = os.environ.get("HEADRACE_TEST_SQLITE_FILE")
    sqlite_options: dict[str, object] = {}
    if django.VERSION >= (5, 1):  # older Django has neither option (WAL persists in the file)
        sqlite_options["init_command"] = "PRAGMA journal_mode=WAL;"
        # The setting that broke the worker's state writes while the core carried a second
        # SQLite library (see README, "Django on SQLite").
        sqlite_options["transaction_mode"] = "IMMEDIATE"
    DATABASES = {
        "default": {
            "ENGINE": "django.db.backends.sqlite3",
            "NAME": os.path.join(tempfile.gettempdir(), "headrace-django-dev.sqlite3"),
            "OPTIONS": sqlite_options,
            "TEST": {"NAME": sqlite_file} if sqlite_file else {},
        }
    }

# A second database (SQLite in memory on both legs), for the innermost-atomic-block alias choice.
DATABASES["second"] = {"ENGINE": "django.db.backends.sqlite3", "NAME": ":memory:"}

# Subprocesses (the worker command tests) point at the test database by name.
if os.environ.get("HEADRACE_TEST_DB_NAME"):
    DATABASES["default"]["NAME"] = os.environ["HEADRACE_TEST_DB_NAME"]

HEADRACE = {
    "HANDLERS": {"shop.order_placed": "shop.handlers.order_placed", "shop.slow": "shop.handlers.slow"},
    "BRIDGES": [b for b in os.environ.get("HEADRACE_TEST_BRIDGES", "").split(",") if b],
    "RETRY": {"base_seconds": 0.01, "max_seconds": 0.05, "jitter": 0.0},
    "POLL_INTERVAL": 0.05,
    "POLICIES": json.loads(os.environ["HEADRACE_TEST_POLICIES"]) if os.environ.get("HEADRACE_TEST_POLICIES") else None,
}

TASKS = {
    "default": {
        "BACKEND": "headrace.django.tasks.HeadraceTaskBackend",
        "QUEUES": ["default", "mail"],
    }
}
