"""A minimal shop: an order saved and an event enqueued in one transaction, a task with
retries, and ``manage.py headrace_worker`` to run them. SQLite by default; set
``DATABASE_URL=postgres://user@host/db`` for PostgreSQL."""

import os
from pathlib import Path
from urllib.parse import unquote, urlsplit

BASE_DIR = Path(__file__).resolve().parent.parent
SECRET_KEY = "example-only"
DEBUG = True
ALLOWED_HOSTS = ["*"]
USE_TZ = True
ROOT_URLCONF = "shopsite.urls"
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
INSTALLED_APPS = ["django.contrib.contenttypes", "django.contrib.auth", "headrace.django", "orders"]

url = os.environ.get("DATABASE_URL")
if url:
    parts = urlsplit(url)
    DATABASES = {
        "default": {
            "ENGINE": "django.db.backends.postgresql",
            "NAME": parts.path.lstrip("/"),
            "USER": unquote(parts.username or ""),
            "PASSWORD": unquote(parts.password or ""),
            "HOST": parts.hostname or "",
            "PORT": str(parts.port or ""),
        }
    }
else:
    import django

    DATABASES = {
        "default": {
            "ENGINE": "django.db.backends.sqlite3",
            "NAME": os.environ.get("SHOP_DB", BASE_DIR / "shop.sqlite3"),
            # Django >= 5.1; older versions: WAL persists once the worker has opened the file.
            "OPTIONS": {"init_command": "PRAGMA journal_mode=WAL;", "transaction_mode": "IMMEDIATE"},
        }
    }

    if django.VERSION < (5, 1):
        DATABASES["default"]["OPTIONS"] = {}

HEADRACE = {
    "HANDLERS": {"orders.placed": "orders.handlers.send_confirmation"},
    "RETRY": {"base_seconds": 1.0, "max_seconds": 30.0},
}
TASKS = {"default": {"BACKEND": "headrace.django.tasks.HeadraceTaskBackend"}}
