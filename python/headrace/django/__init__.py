"""headrace for Django: ``INSTALLED_APPS = [..., "headrace.django"]``, ``manage.py migrate``.

* :func:`enqueue` / :func:`enqueue_many` / :func:`aenqueue` add outbox items on Django's own
  connection, inside the caller's transaction.
* ``manage.py headrace_worker`` runs the outbox worker, the policy runner and due bridges.
* ``headrace.django.tasks.HeadraceTaskBackend`` is a Django Tasks backend with retries.
* ``headrace.django.testing`` has helpers that work inside ``TestCase``.
"""

from __future__ import annotations

from typing import Any

__all__ = ["aenqueue", "aenqueue_many", "enqueue", "enqueue_many", "get_settings"]


def __getattr__(name: str) -> Any:
    # Lazy, so importing headrace.django (e.g. from settings.py) imports nothing of Django's ORM.
    if name in ("aenqueue", "aenqueue_many", "enqueue", "enqueue_many"):
        from headrace.django import outbox as module

        return getattr(module, name)
    if name == "get_settings":
        from headrace.django.conf import get_settings

        return get_settings
    raise AttributeError(f"module 'headrace.django' has no attribute {name!r}")
