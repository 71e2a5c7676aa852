"""A bridge the worker command runs when due (HEADRACE['BRIDGES'])."""

from __future__ import annotations

from typing import Any, ClassVar

from headrace.integrations import BridgeImpl
from shop.models import Order


class OrderImportBridge(BridgeImpl):
    """Pulls "orders" in: each sync creates one imported order."""

    key = "shop.order-import"
    interval_seconds: ClassVar[float | None] = 3600.0

    def sync(self) -> Any:
        Order.objects.create(number="imported")
        return "imported 1"
