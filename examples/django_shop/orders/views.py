from django.db import transaction
from django.http import JsonResponse

import headrace.django as hr
from orders.models import Order
from orders.tasks import charge_card


def place_order(request):
    """The order, its event and its task commit together, or not at all."""
    with transaction.atomic():
        order = Order.objects.create(email=request.GET.get("email", "a@example.com"), total_cents=4200)
        hr.enqueue("orders.placed", {"order_id": order.pk})
        result = charge_card.enqueue(order.pk)
    return JsonResponse({"order": order.pk, "charge": result.id})
