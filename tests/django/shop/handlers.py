"""Handlers the worker tests dispatch to."""

from __future__ import annotations

from typing import Any

from django.db import connection

from shop.models import Order

#: Connection ids seen by handler calls (the worker's connection-hygiene tests read it).
seen_connections: list[int] = []


def order_placed(item: Any) -> None:
    Order.objects.filter(pk=item.payload["order_id"]).update(notified=True)
    seen_connections.append(id(connection.connection) if connection.connection else 0)


def flaky(item: Any) -> None:
    if item.attempts < 2:
        raise RuntimeError(f"flaky fails attempt {item.attempts}")


def always_fails(item: Any) -> None:
    raise RuntimeError("always fails")


async def async_order_placed(item: Any) -> None:
    from asgiref.sync import sync_to_async

    await sync_to_async(order_placed, thread_sensitive=True)(item)


def slow(item: Any) -> None:
    import time

    time.sleep(float(item.payload.get("seconds", 1)))
