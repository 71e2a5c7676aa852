"""The task the Django row enqueues (through either Tasks backend; it never runs)."""

from __future__ import annotations

try:
    from django.tasks import task
except ImportError:
    from django_tasks import task  # type: ignore[no-redef]


@task()
def add(a: int, b: int) -> int:
    return a + b
