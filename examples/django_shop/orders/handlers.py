from orders.models import Order


def send_confirmation(item):
    """Runs in manage.py headrace_worker for every committed "orders.placed" item."""
    order = Order.objects.get(pk=item.payload["order_id"])
    print(f"confirmation mail to {order.email} for order {order.pk}")
    Order.objects.filter(pk=order.pk).update(confirmed=True)
