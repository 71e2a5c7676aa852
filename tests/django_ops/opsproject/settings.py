"""Settings of the ops test project: SQLite by default, PostgreSQL with HEADRACE_OPS_DB=postgres
(the server from HEADRACE_TEST_PG_URL)."""

from __future__ import annotations

import os
from pathlib import Path
from urllib.parse import unquote, urlsplit

import django

BASE_DIR = Path(__file__).resolve().parent.parent
SECRET_KEY = "headrace-ops-tests-only"
DEBUG = False
ALLOWED_HOSTS = ["*"]
USE_TZ = True
TIME_ZONE = "UTC"
ROOT_URLCONF = "opsproject.urls"
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
STATIC_URL = "/static/"

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "headrace.django",
    "opsdemo",
]
MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "opsdemo.middleware.TenantHeaderMiddleware",
]
TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ]
        },
    }
]
CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}
REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "rest_framework.authentication.SessionAuthentication",
        "rest_framework.authentication.BasicAuthentication",
    ],
}


# Django >= 5.1: WAL, and transactions that read then write take the write lock first
# (headrace.W002, W003); Django 4.2 has neither option.
_SQLITE_OPTIONS = (
    {"init_command": "PRAGMA journal_mode=WAL;", "transaction_mode": "IMMEDIATE"} if django.VERSION >= (5, 1) else {}
)


def _database() -> dict[str, object]:
    if os.environ.get("HEADRACE_OPS_DB", "sqlite") != "postgres":
        # A file, not Django's default in-memory test database: the core's own connections
        # (state backend, workers) must see the same database.
        return {
            "ENGINE": "django.db.backends.sqlite3",
            "NAME": str(BASE_DIR / "ops.sqlite3"),
            "TEST": {"NAME": str(BASE_DIR / "ops-test.sqlite3")},
            "OPTIONS": {"timeout": 30, **_SQLITE_OPTIONS},
        }
    url = os.environ.get("HEADRACE_TEST_PG_URL")
    if not url:
        raise RuntimeError("HEADRACE_OPS_DB=postgres needs HEADRACE_TEST_PG_URL=postgres://user@host:port/db")
    parts = urlsplit(url)
    return {
        "ENGINE": "django.db.backends.postgresql",
        "NAME": parts.path.lstrip("/"),
        "USER": unquote(parts.username or ""),
        "PASSWORD": unquote(parts.password or ""),
        "HOST": parts.hostname or "",
        "PORT": str(parts.port or 5432),
        "TEST": {"NAME": parts.path.lstrip("/") + "_ops_django"},
    }


DATABASES = {"default": _database()}

# Long backoffs, so an item retried by a test stays "retrying" however slow the machine is.
HEADRACE = {"HEARTBEAT_MAX_AGE": 30, "RETRY": {"base_seconds": 600, "jitter": 0.0}}
