"""The Django project of the Django-dependent automate tests (test_django_*.py): one settings
module for every test file, on a SQLite file that the core's stores open too."""

from __future__ import annotations

import json
import sqlite3
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

SECRET = "whsec_ZGphbmdvLXdlYmhvb2stc2VjcmV0LTE="
OLD_SECRET = "whsec_b2xkLWRqYW5nby1zZWNyZXQ="
DB_FILE = Path(tempfile.mkdtemp(prefix="hr-automate-django-")) / "db.sqlite3"


def setup() -> Any:
    """Configures and sets up Django once per process, migrated; returns the settings."""
    import django
    from django.conf import settings

    if not settings.configured:
        settings.configure(
            DEBUG=False,
            SECRET_KEY="automate-tests",
            ALLOWED_HOSTS=["testserver"],
            INSTALLED_APPS=[
                "django.contrib.admin",
                "django.contrib.contenttypes",
                "django.contrib.auth",
                "django.contrib.sessions",
                "django.contrib.messages",
                "headrace.django",
                "headrace.django.automate",
            ],
            TEMPLATES=[
                {
                    "BACKEND": "django.template.backends.django.DjangoTemplates",
                    "APP_DIRS": True,
                    "OPTIONS": {
                        "context_processors": [
                            "django.template.context_processors.request",
                            "django.contrib.auth.context_processors.auth",
                            "django.contrib.messages.context_processors.messages",
                        ]
                    },
                }
            ],
            DATABASES={"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": str(DB_FILE)}},
            ROOT_URLCONF="automate_django_urls",
            MIDDLEWARE=[
                "django.contrib.sessions.middleware.SessionMiddleware",
                "django.middleware.common.CommonMiddleware",
                "django.middleware.csrf.CsrfViewMiddleware",
                "django.contrib.auth.middleware.AuthenticationMiddleware",
                "django.contrib.messages.middleware.MessageMiddleware",
            ],
            HEADRACE={"DATABASE": "default"},
            HEADRACE_WEBHOOKS={
                "shop": {"secrets": [SECRET, OLD_SECRET], "max_body_bytes": 4096},
                "closed": {},
            },
            USE_TZ=True,
        )
        django.setup()
        from django.core.management import call_command

        call_command("migrate", verbosity=0)
    return settings


def post(client: Any, source: str, body: bytes, headers: dict[str, str]) -> Any:
    extra = {f"HTTP_{k.upper().replace('-', '_')}": v for k, v in headers.items()}
    return client.post(f"/hooks/{source}/", data=body, content_type="application/json", **extra)


def event_items() -> list[dict[str, Any]]:
    """The rows of ``headrace_outbox`` on ``headrace.events``, oldest first."""
    conn = sqlite3.connect(DB_FILE)
    conn.row_factory = sqlite3.Row
    rows = [dict(r) for r in conn.execute("SELECT * FROM headrace_outbox WHERE topic = 'headrace.events' ORDER BY id")]
    conn.close()
    for row in rows:
        row["payload"] = json.loads(row["payload"])
    return rows


def superuser_client() -> Any:
    from django.contrib.auth.models import User
    from django.test import Client

    user, _ = User.objects.get_or_create(username="root", defaults={"is_staff": True, "is_superuser": True})
    client = Client()
    client.force_login(user)
    return client


def admin_pages(app_labels: tuple[str, ...] = ("headrace", "headrace_automate")) -> dict[str, str]:
    """Every admin page of the models of ``app_labels`` a superuser reaches from the index: each
    list and every change page it links to, by URL; each must render."""
    import html
    import re

    from django.contrib import admin

    client = superuser_client()
    pages: dict[str, str] = {}
    for model in admin.site._registry:
        if model._meta.app_label not in app_labels:
            continue
        base = f"/admin/{model._meta.app_label}/{model._meta.model_name}/"
        listing = client.get(base)
        assert listing.status_code == 200, f"{base} answered {listing.status_code}"
        pages[base] = listing.content.decode()
        linked = re.findall(r'href="(' + re.escape(base) + r'[^"?#]+/change/)"', pages[base])
        for url in dict.fromkeys(html.unescape(u) for u in linked):
            page = client.get(url)
            assert page.status_code == 200, f"{url} answered {page.status_code}"
            pages[url] = page.content.decode()
    return pages


@contextmanager
def core_stores() -> Iterator[tuple[Any, Any]]:
    """An outbox store (fast retries) and a state backend of the core on the project's database."""
    from headrace.outbox import OutboxStore, RetryPolicy
    from headrace.state import StateBackend

    url = f"sqlite://{DB_FILE}"
    retry = RetryPolicy(max_attempts=4, base_seconds=0.05, factor=1.0, max_seconds=0.1, jitter=0.0)
    store = OutboxStore.connect(url, retry=retry)
    state = StateBackend.connect(url)
    try:
        yield store, state
    finally:
        state.wait_for_all_async_operations()
        store.close()
        state.close()


def events_worker(store: Any, engine: Any) -> Any:
    """A worker of ``engine``'s events and runs that has run whatever earlier tests left behind."""
    from headrace.worker import OutboxWorker

    worker = OutboxWorker(
        store, engine.handlers(), poll_interval=0.05, reaper_interval=None, topics=list(engine.handlers())
    )
    worker.run_until_empty(timeout=10)
    return worker
