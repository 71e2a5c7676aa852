"""``WebhookView``: signed webhooks into the outbox, at ``path("hooks/<source>/", WebhookView.as_view())``.

Sources are configured in ``settings.HEADRACE_WEBHOOKS``::

    HEADRACE_WEBHOOKS = {
        "shop": {"secrets": [env("SHOP_WEBHOOK_SECRET"), env("SHOP_WEBHOOK_SECRET_OLD")]},
        "github": {"secret": env("GH_SECRET"), "method": "hmac_hex"},
    }

Each request is verified by the core (Standard Webhooks HMAC-SHA256 over the raw body, constant
time, timestamp tolerance, several secrets for rotation); a source without a secret rejects
everything. A verified JSON object is stored as one outbox item on ``headrace.events`` (the event
itself) with ``dedupe_key`` from the delivery id, inside ``transaction.atomic()`` on the outbox's
database, and the view answers **202** with ``{"trace_id": ...}`` and an ``X-Trace-Id`` header.
A delivery received before (pending, processing or already processed) is not stored again: the
view answers **200** with ``"status": "duplicate"`` and the first delivery's trace id.
Bad or missing signatures answer 401, non-JSON 400, oversized bodies 413: nothing is stored.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.db import transaction
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.utils.decorators import method_decorator
from django.views import View
from django.views.decorators.csrf import csrf_exempt

from headrace.errors import ConfigError
from headrace.webhooks import StoredItem, WebhookSource, receive

__all__ = ["DjangoEventSink", "WebhookView", "webhook_source"]


def webhook_source(name: str) -> WebhookSource | None:
    """The configured source ``name`` (``None`` when it is not configured)."""
    sources = getattr(settings, "HEADRACE_WEBHOOKS", None) or {}
    if not isinstance(sources, dict):
        raise ConfigError("settings.HEADRACE_WEBHOOKS must be a dict of source name -> settings")
    if name not in sources:
        return None
    return WebhookSource.from_config(name, sources[name])


def _database_alias() -> str:
    try:
        from headrace.django.conf import get_settings

        return str(get_settings().DATABASE)
    except Exception:
        return "default"


class DjangoEventSink:
    """Stores events with ``headrace.django.enqueue`` on ``alias`` (the caller's transaction) and
    finds earlier deliveries in ``headrace_outbox`` on the same connection."""

    def __init__(self, alias: str) -> None:
        self.alias = alias

    def enqueue(self, topic: str, payload: Any, *, dedupe_key: str | None = None, trace_id: str | None = None) -> int:
        from headrace.django import enqueue

        item_id = enqueue(topic, payload, using=self.alias, dedupe_key=dedupe_key, trace_id=trace_id)
        if item_id is None:
            raise ConfigError("enqueue returned no id")
        return int(item_id)

    def get_by_dedupe_key(self, dedupe_key: str) -> StoredItem | None:
        from headrace.django.models import OutboxItem

        items = OutboxItem.objects.using(self.alias).filter(dedupe_key=dedupe_key)
        found: StoredItem | None = items.only("id", "trace_id").order_by("-id").first()
        return found


@method_decorator(csrf_exempt, name="dispatch")
class WebhookView(View):  # type: ignore[misc,unused-ignore]
    """Receives ``POST hooks/<source>/`` (see the module doc)."""

    http_method_names = ("post",)

    def post(self, request: HttpRequest, source: str) -> HttpResponse:
        config = webhook_source(source)
        # Read the size from the header first so an oversized body is refused unread.
        declared = request.headers.get("Content-Length")
        if config is not None and declared and declared.isdigit() and int(declared) > config.max_body_bytes:
            return JsonResponse(
                {"error": {"code": "payload_too_large", "message": f"the body exceeds {config.max_body_bytes} bytes"}},
                status=413,
            )
        body = request.body
        alias = _database_alias()
        with transaction.atomic(using=alias):
            receipt = receive(config, dict(request.headers), body, DjangoEventSink(alias), source_name=source)
        response = JsonResponse(receipt.body, status=receipt.status)
        if receipt.trace_id:
            response["X-Trace-Id"] = receipt.trace_id
        return response
