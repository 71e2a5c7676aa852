"""Tasks for the Tasks backend tests."""

from __future__ import annotations

from typing import Any

from headrace.django.tasks import retry
from shop.models import Order

try:
    from django.tasks import task
except ImportError:
    from django_tasks import task  # type: ignore[no-redef]

calls: list[str] = []


@task()
def add(a: int, b: int) -> int:
    return a + b


@task(queue_name="mail", priority=10)
def mark_notified(order_id: int) -> dict[str, Any]:
    Order.objects.filter(pk=order_id).update(notified=True)
    return {"order": order_id, "tuple": (1, 2)}


@task()
@retry(max_attempts=3, base_seconds=0.01, max_seconds=0.01, jitter=0.0)
def flaky(fail_until: int) -> str:
    calls.append("flaky")
    if len(calls) < fail_until:
        raise ValueError(f"attempt {len(calls)} fails")
    return "done"


@task()
@retry(max_attempts=2, base_seconds=0.01, jitter=0.0)
def always_fails() -> None:
    raise KeyError("never works")


@task()
def no_retry_by_default() -> None:
    raise RuntimeError("one attempt only")


@task(takes_context=True)
@retry(max_attempts=3, base_seconds=0.01, jitter=0.0)
def attempts_seen(context: Any) -> int:
    if context.attempt < 2:
        raise RuntimeError("first attempt fails")
    return int(context.attempt)


@task()
async def async_add(a: int, b: int) -> int:
    return a + b
