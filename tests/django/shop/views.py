from __future__ import annotations

from asgiref.sync import sync_to_async
from django.db import transaction
from django.http import HttpRequest, HttpResponse, JsonResponse

import headrace.django as hr
from shop.models import Order


def place_order(request: HttpRequest) -> HttpResponse:
    """Under ATOMIC_REQUESTS the whole view is one transaction; ?fail=1 raises after the enqueue."""
    order = Order.objects.create(number=request.GET.get("number", "A-1"))
    item_id = hr.enqueue("shop.order_placed", {"order_id": order.pk})
    if request.GET.get("fail"):
        raise RuntimeError("the view failed after enqueueing")
    return JsonResponse({"order": order.pk, "item": item_id})


def _place_in_transaction(number: str, fail: bool) -> tuple[int, int | None]:
    with transaction.atomic():
        order = Order.objects.create(number=number)
        item_id = hr.enqueue("shop.order_placed", {"order_id": order.pk})
        if fail:
            raise RuntimeError("rolled back")
        return order.pk, item_id


async def place_order_async(request: HttpRequest) -> HttpResponse:
    """Async view: the transaction and the enqueue run together on the sync thread."""
    fail = bool(request.GET.get("fail"))
    try:
        order, item = await sync_to_async(_place_in_transaction, thread_sensitive=True)(
            request.GET.get("number", "B-1"), fail
        )
    except RuntimeError:
        return JsonResponse({"rolled_back": True}, status=500)
    return JsonResponse({"order": order, "item": item})
