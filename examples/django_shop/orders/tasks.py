from headrace.django.tasks import retry
from orders.models import Order

try:
    from django.tasks import task
except ImportError:  # Django < 6: the django-tasks backport
    from django_tasks import task


@task(takes_context=True)
@retry(max_attempts=5, base_seconds=1.0, jitter=0.0)
def charge_card(context, order_id: int) -> str:
    """A payment call whose first attempt times out: retried after 1 s, then it succeeds."""
    if context.attempt == 1:
        raise ConnectionError("payment provider timed out")
    Order.objects.filter(pk=order_id).update(charged=True)
    return f"charged order {order_id} on attempt {context.attempt}"
