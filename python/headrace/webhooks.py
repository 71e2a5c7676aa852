"""Signed webhooks: verification (in Rust) and framework-neutral ingestion.

The scheme is Standard Webhooks: ``webhook-id``, ``webhook-timestamp`` and ``webhook-signature``
headers, HMAC-SHA256 over ``"{id}.{timestamp}.{raw body}"``, base64 ``v1,<sig>`` values (several
at once for rotation), constant-time comparison and a timestamp tolerance (default 300 s, either
direction) against replay. A source with no secret rejects every request (fails closed).

:func:`receive` is what the Django ``WebhookView`` (and any other front end) calls: it verifies,
checks size and JSON, and stores one event (:func:`store_event`) whose ``dedupe_key`` is
``"webhook:{source}:{webhook-id}"``. It returns a :class:`Receipt` with the status to answer.

A replayed delivery (same source and ``webhook-id``) is stored once, whenever it arrives: while
the first is pending or processing the outbox's dedupe rule returns the live item, and after it
completed (or was dead-lettered) the stored item is found by its dedupe key
(``get_by_dedupe_key``), so nothing is enqueued and the replay is answered **200** with the first
delivery's ``trace_id`` and ``"status": "duplicate"``; so is a twin stored concurrently between
the lookup and the enqueue (the item the outbox returned carries the other trace id). Completed
items are kept until purged: keep them longer than the timestamp tolerance, beyond which a replay
is refused as stale anyway.
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from headrace import _core
from headrace.errors import ConfigError, WebhookVerificationError

__all__ = [
    "DEFAULT_MAX_BODY_BYTES",
    "DEFAULT_TOLERANCE_SECONDS",
    "EVENT_TOPIC",
    "EventSink",
    "Receipt",
    "WebhookSource",
    "WebhookVerificationError",
    "receive",
    "sign",
    "signed_headers",
    "store_event",
    "verify_headers",
]

log = logging.getLogger("headrace.webhooks")

DEFAULT_TOLERANCE_SECONDS = 300
DEFAULT_MAX_BODY_BYTES = 1024 * 1024
#: The outbox topic events are enqueued on (the workflow engine handles it).
EVENT_TOPIC = "headrace.events"


def _header(headers: Mapping[str, str], name: str) -> str | None:
    wanted = name.lower()
    for key, value in headers.items():
        if key.lower() == wanted:
            return value
    # Django's META spelling, for callers that pass request.META.
    meta = "HTTP_" + name.upper().replace("-", "_")
    return headers.get(meta)


def sign(secret: str, delivery_id: str, timestamp: int, body: bytes) -> str:
    """The ``webhook-signature`` value (``v1,<base64>``) for one secret."""
    return _core.webhook_sign(secret, delivery_id, int(timestamp), bytes(body))


def signed_headers(
    secrets: str | Sequence[str],
    body: bytes,
    *,
    delivery_id: str | None = None,
    timestamp: int | None = None,
) -> dict[str, str]:
    """Headers a sender adds: one ``v1,`` signature per secret (for senders and tests)."""
    listed = [secrets] if isinstance(secrets, str) else list(secrets)
    delivery_id = delivery_id or f"msg_{uuid.uuid4().hex}"
    timestamp = int(time.time()) if timestamp is None else int(timestamp)
    return {
        "webhook-id": delivery_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": " ".join(sign(s, delivery_id, timestamp, body) for s in listed),
    }


@dataclass(frozen=True)
class Verified:
    delivery_id: str
    timestamp: int | None


def verify_headers(
    headers: Mapping[str, str],
    body: bytes,
    secrets: Sequence[str],
    *,
    method: str = "hmac",
    tolerance_seconds: int = DEFAULT_TOLERANCE_SECONDS,
    now: float | None = None,
) -> Verified:
    """Verifies a delivery or raises :class:`WebhookVerificationError` (never returns on failure).

    ``method``: ``hmac`` (Standard Webhooks), ``hmac_hex`` (``X-Hub-Signature-256`` or
    ``X-Signature``: hex HMAC of the body, no replay protection; the delivery id comes from
    ``X-GitHub-Delivery`` / ``webhook-id`` when present) or ``none`` (explicit opt-out).
    """
    secrets = [s for s in secrets if s]
    if method == "hmac":
        delivery_id, ts = _core.webhook_verify(
            secrets,
            _header(headers, "webhook-id"),
            _header(headers, "webhook-timestamp"),
            _header(headers, "webhook-signature"),
            bytes(body),
            int(time.time() if now is None else now),
            int(tolerance_seconds),
        )
        return Verified(delivery_id, ts)
    if method == "hmac_hex":
        signature = _header(headers, "x-hub-signature-256") or _header(headers, "x-signature")
        _core.webhook_verify_hex(secrets, signature, bytes(body))
        delivery = _header(headers, "x-github-delivery") or _header(headers, "webhook-id") or ""
        return Verified(delivery, None)
    if method == "none":
        return Verified(_header(headers, "webhook-id") or "", None)
    raise ConfigError(f"unknown webhook verification method {method!r}; use 'hmac', 'hmac_hex' or 'none'")


@dataclass(frozen=True)
class WebhookSource:
    """How one ``hooks/<source>/`` endpoint verifies and limits its requests."""

    name: str
    secrets: tuple[str, ...] = ()
    method: str = "hmac"
    tolerance_seconds: int = DEFAULT_TOLERANCE_SECONDS
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES
    #: The payload field holding the event type (Standard Webhooks: ``type``).
    type_field: str = "type"

    def __repr__(self) -> str:
        return f"WebhookSource({self.name!r}, secrets={len(self.secrets)}, method={self.method!r})"

    @classmethod
    def from_config(cls, name: str, config: Mapping[str, Any] | None) -> WebhookSource:
        """From a settings entry ``{"secrets": [...]} | {"secret": "..."}``, plus optional fields."""
        config = dict(config or {})
        secrets = config.pop("secrets", None)
        single = config.pop("secret", None)
        listed: list[str] = [str(s) for s in (secrets or []) if s]
        if single:
            listed.insert(0, str(single))
        unknown = set(config) - {"method", "tolerance_seconds", "max_body_bytes", "type_field"}
        if unknown:
            raise ConfigError(f"webhook source {name!r} has unknown settings {sorted(unknown)}")
        return cls(name=name, secrets=tuple(listed), **config)


@dataclass
class Receipt:
    """What to answer: ``status`` (200 for a replay, 202, 400, 401, 404, 413) and the JSON ``body``."""

    status: int
    body: dict[str, Any] = field(default_factory=dict)
    trace_id: str | None = None
    event: dict[str, Any] | None = None
    item_id: int | None = None
    #: The delivery was received before (``item_id`` and ``trace_id`` are the first one's).
    duplicate: bool = False


class StoredItem(Protocol):
    @property
    def id(self) -> int: ...
    @property
    def trace_id(self) -> str | None: ...


class EventSink(Protocol):
    """Where events go: an ``OutboxStore``, or an adapter such as the Django view's."""

    def enqueue(self, topic: str, payload: Any, *, dedupe_key: str | None = ..., trace_id: str | None = ...) -> int:
        """Adds an item; a ``dedupe_key`` a pending or processing item holds returns that item's id."""
        ...

    def get_by_dedupe_key(self, dedupe_key: str) -> StoredItem | None:
        """The newest item holding ``dedupe_key`` in any status (``None`` if none, or purged)."""
        ...


def event_dedupe_key(source: str, delivery_id: str) -> str:
    """The ``dedupe_key`` of a delivery: one stored event per source and delivery id."""
    return f"webhook:{source}:{delivery_id}"


def store_event(sink: EventSink, event: dict[str, Any]) -> tuple[int, str, bool]:
    """Stores ``event`` on :data:`EVENT_TOPIC` once per source and delivery id.

    Returns ``(item_id, trace_id, duplicate)``: for a delivery stored before (in any status),
    the first item's id and trace id, and nothing is enqueued.
    """
    key = event_dedupe_key(event["source"], event["delivery_id"])
    trace_id = str(event["trace_id"])
    existing = sink.get_by_dedupe_key(key)
    if existing is not None:
        return int(existing.id), existing.trace_id or trace_id, True
    item_id = int(sink.enqueue(EVENT_TOPIC, event, dedupe_key=key, trace_id=trace_id))
    # A concurrent delivery of the same id may have been stored between the lookup and the
    # enqueue: the outbox then returned that item, whose trace id is not ours.
    stored = sink.get_by_dedupe_key(key)
    if stored is not None and int(stored.id) == item_id and stored.trace_id and stored.trace_id != trace_id:
        return item_id, stored.trace_id, True
    return item_id, trace_id, False


def receive(
    source: WebhookSource | None,
    headers: Mapping[str, str],
    body: bytes,
    sink: EventSink,
    *,
    source_name: str | None = None,
    now: float | None = None,
    on_stored: Callable[[dict[str, Any]], None] | None = None,
) -> Receipt:
    """Verifies and stores one delivery through ``sink`` (:func:`store_event`).

    Nothing is enqueued unless the request verifies, fits ``max_body_bytes``, is a JSON object and
    was not received before. ``on_stored`` sees each newly stored event.
    """
    name = source.name if source else (source_name or "?")
    if source is None:
        return Receipt(404, {"error": {"code": "unknown_source", "message": f"no webhook source {name!r}"}})
    if len(body) > source.max_body_bytes:
        return Receipt(
            413,
            {"error": {"code": "payload_too_large", "message": f"the body exceeds {source.max_body_bytes} bytes"}},
        )
    try:
        verified = verify_headers(
            headers, body, source.secrets, method=source.method, tolerance_seconds=source.tolerance_seconds, now=now
        )
    except WebhookVerificationError as exc:
        log.warning("webhook for source %s refused: %s", name, exc.message)
        return Receipt(401, {"error": {"code": exc.code, "message": exc.message}})
    try:
        payload = json.loads(body)
    except (UnicodeDecodeError, ValueError):
        return Receipt(400, {"error": {"code": "invalid_json", "message": "the body is not JSON"}})
    if not isinstance(payload, dict):
        return Receipt(400, {"error": {"code": "invalid_json", "message": "the body must be a JSON object"}})
    trace_id = uuid.uuid4().hex
    delivery_id = verified.delivery_id or trace_id
    event_type = payload.get(source.type_field)
    event = {
        "id": f"{name}:{delivery_id}",
        "source": name,
        "type": event_type if isinstance(event_type, str) and event_type else "webhook",
        "delivery_id": delivery_id,
        "payload": payload,
        "received_at": time.time() if now is None else now,
        "trace_id": trace_id,
    }
    item_id, trace_id, duplicate = store_event(sink, event)
    if duplicate:
        log.info(
            "webhook delivery %s of source %s was received before (item %s): not stored", delivery_id, name, item_id
        )
        return Receipt(
            200,
            {"status": "duplicate", "trace_id": trace_id, "event_id": event["id"]},
            trace_id,
            None,
            item_id,
            duplicate=True,
        )
    if on_stored is not None:
        on_stored(event)
    return Receipt(202, {"status": "accepted", "trace_id": trace_id, "event_id": event["id"]}, trace_id, event, item_id)
