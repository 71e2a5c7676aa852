"""Signed webhooks: Standard Webhooks HMAC in Rust, and framework-neutral ingestion."""

from __future__ import annotations

import json
import os
import time
from datetime import datetime, timezone
from typing import Any

import pytest

from headrace.errors import WebhookVerificationError
from headrace.webhooks import WebhookSource, receive, sign, signed_headers, verify_headers

# The Standard Webhooks specification's test vector.
SPEC_SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
SPEC_ID = "msg_p5jXN8AQM9LWM0D4loKWxJek"
SPEC_TS = 1614265330
SPEC_BODY = b'{"test": 2432232314}'
SPEC_SIGNATURE = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="

NEW = "whsec_bmV3LXNlY3JldC1rZXktMDAx"
OLD = "whsec_b2xkLXNlY3JldC1rZXktMDAw"


def test_signature_matches_the_spec_test_vector() -> None:
    assert sign(SPEC_SECRET, SPEC_ID, SPEC_TS, SPEC_BODY) == SPEC_SIGNATURE
    headers = {"webhook-id": SPEC_ID, "webhook-timestamp": str(SPEC_TS), "webhook-signature": SPEC_SIGNATURE}
    assert verify_headers(headers, SPEC_BODY, [SPEC_SECRET], now=SPEC_TS).delivery_id == SPEC_ID


def _upstream() -> Any:
    if os.environ.get("CI") == "true":
        from standardwebhooks.webhooks import Webhook  # type: ignore[import-not-found,import-untyped,unused-ignore]
    else:
        Webhook = pytest.importorskip("standardwebhooks.webhooks").Webhook
    return Webhook


def test_agrees_with_the_reference_python_library_both_ways() -> None:
    Webhook = _upstream()
    body = json.dumps({"type": "order.created", "id": 7}).encode()
    now = int(time.time())
    theirs = Webhook(NEW).sign("msg_1", datetime.fromtimestamp(now, tz=timezone.utc), body.decode())
    assert theirs == sign(NEW, "msg_1", now, body)
    ours = signed_headers(NEW, body, delivery_id="msg_2", timestamp=now)
    assert Webhook(NEW).verify(body, ours) == {"type": "order.created", "id": 7}
    their_headers = {
        "webhook-id": "msg_3",
        "webhook-timestamp": str(now),
        "webhook-signature": Webhook(NEW).sign("msg_3", datetime.fromtimestamp(now, tz=timezone.utc), body.decode()),
    }
    assert verify_headers(their_headers, body, [NEW]).delivery_id == "msg_3"


def test_bad_stale_future_and_missing_signatures_are_refused() -> None:
    body = b'{"type": "x"}'
    now = int(time.time())
    good = signed_headers(NEW, body, timestamp=now)
    verify_headers(good, body, [NEW])
    with pytest.raises(WebhookVerificationError, match="no webhook-signature matches"):
        verify_headers(good, body + b" ", [NEW])
    with pytest.raises(WebhookVerificationError):
        verify_headers(good, body, [OLD])
    for skew in (-301, 301):
        stale = signed_headers(NEW, body, timestamp=now + skew)
        with pytest.raises(WebhookVerificationError, match="tolerance"):
            verify_headers(stale, body, [NEW])
    for header in ("webhook-id", "webhook-timestamp", "webhook-signature"):
        partial = {k: v for k, v in good.items() if k != header}
        with pytest.raises(WebhookVerificationError, match=f"{header} header is missing"):
            verify_headers(partial, body, [NEW])
    with pytest.raises(WebhookVerificationError, match="not an integer"):
        verify_headers({**good, "webhook-timestamp": "soon"}, body, [NEW])


def test_rotation_accepts_old_and_new_secrets() -> None:
    body = b'{"type": "x"}'
    by_old = signed_headers(OLD, body)
    by_new = signed_headers(NEW, body)
    by_both = signed_headers([OLD, NEW], body)
    for headers in (by_old, by_new, by_both):
        verify_headers(headers, body, [NEW, OLD])
    with pytest.raises(WebhookVerificationError):
        verify_headers(by_old, body, [NEW])


def test_no_secret_fails_closed() -> None:
    body = b'{"type": "x"}'
    with pytest.raises(WebhookVerificationError, match="fail closed"):
        verify_headers(signed_headers(NEW, body), body, [])
    with pytest.raises(WebhookVerificationError, match="fail closed"):
        verify_headers(signed_headers(NEW, body), body, [""])


def test_hex_scheme_for_github_style_senders() -> None:
    from headrace._core import webhook_sign_hex

    body = b'{"zen": "hi"}'
    sig = webhook_sign_hex("s3cr3t", body)
    assert verify_headers({"X-Hub-Signature-256": sig}, body, ["s3cr3t"], method="hmac_hex").timestamp is None
    with pytest.raises(WebhookVerificationError):
        verify_headers({"X-Hub-Signature-256": sig}, body + b"!", ["s3cr3t"], method="hmac_hex")
    with pytest.raises(WebhookVerificationError):
        verify_headers({}, body, ["s3cr3t"], method="hmac_hex")


def test_receive_stores_only_verified_json_within_limits(stores: tuple[Any, Any]) -> None:
    store, _ = stores
    source = WebhookSource("shop", secrets=(NEW, OLD), max_body_bytes=200)
    body = json.dumps({"type": "order.created", "order": {"id": "A1"}}).encode()

    ok = receive(source, signed_headers(OLD, body, delivery_id="msg_ok"), body, store)
    assert ok.status == 202 and ok.body["trace_id"] == ok.trace_id and len(ok.trace_id or "") == 32
    item = store.get(ok.item_id)
    assert item.topic == "headrace.events" and item.trace_id == ok.trace_id
    assert item.payload["type"] == "order.created" and item.payload["payload"]["order"]["id"] == "A1"

    replay = receive(source, signed_headers(NEW, body, delivery_id="msg_ok"), body, store)
    assert (replay.status, replay.item_id, replay.trace_id) == (200, ok.item_id, ok.trace_id), "stored once"
    assert replay.duplicate and replay.body["status"] == "duplicate" and replay.event is None

    bad = receive(source, {**signed_headers(NEW, body), "webhook-signature": "v1,AAAA"}, body, store)
    unsigned = receive(source, {}, body, store)
    stale = receive(source, signed_headers(NEW, body, timestamp=int(time.time()) - 3600), body, store)
    not_json = receive(source, signed_headers(NEW, b"<xml/>"), b"<xml/>", store)
    not_object = receive(source, signed_headers(NEW, b"[1]"), b"[1]", store)
    big_body = json.dumps({"type": "x", "pad": "x" * 300}).encode()
    too_big = receive(source, signed_headers(NEW, big_body), big_body, store)
    closed = receive(WebhookSource("shop"), signed_headers(NEW, body), body, store)
    unknown = receive(None, signed_headers(NEW, body), body, store, source_name="nope")
    assert [r.status for r in (bad, unsigned, stale, not_json, not_object, too_big, closed, unknown)] == [
        401,
        401,
        401,
        400,
        400,
        413,
        401,
        404,
    ]
    assert store.stats().get("pending", 0) == 1, "only the one verified delivery was stored"


@pytest.mark.parametrize("outcome", ["completed", "failed"])
def test_a_replay_after_the_first_delivery_was_processed_is_not_stored_again(
    stores: tuple[Any, Any], outcome: str
) -> None:
    store, _ = stores
    source = WebhookSource("shop", secrets=(NEW,))
    body = json.dumps({"type": "order.created", "order": {"id": "A2"}}).encode()
    first = receive(source, signed_headers(NEW, body, delivery_id="msg_done"), body, store)
    assert first.status == 202
    [claimed] = store.claim_batch("w1", 10, topics=["headrace.events"])
    assert claimed.id == first.item_id
    if outcome == "completed":
        store.mark_success(claimed.id, "w1")
    else:
        store.mark_failed(claimed.id, "w1", "dead-lettered")
    # The sender replays the same delivery (same id, re-signed with a fresh timestamp).
    replay = receive(source, signed_headers(NEW, body, delivery_id="msg_done"), body, store)
    assert (replay.status, replay.item_id, replay.trace_id) == (200, first.item_id, first.trace_id)
    assert replay.body == {"status": "duplicate", "trace_id": first.trace_id, "event_id": "shop:msg_done"}
    assert store.stats() == {"pending": 0, "processing": 0, "completed": 0, "failed": 0, outcome: 1}
    assert store.claim_batch("w1", 10) == [], "nothing new to execute"
    other = receive(source, signed_headers(NEW, body, delivery_id="msg_other"), body, store)
    assert other.status == 202 and other.item_id != first.item_id, "another delivery id is a new event"


def test_a_delivery_stored_concurrently_between_lookup_and_enqueue_is_a_duplicate(stores: tuple[Any, Any]) -> None:
    store, _ = stores
    source = WebhookSource("shop", secrets=(NEW,))
    body = json.dumps({"type": "order.created", "order": {"id": "A3"}}).encode()

    class Racing:
        """The real store, with a twin delivery stored right after the first lookup missed it."""

        def __init__(self) -> None:
            self.first: Any = None

        def get_by_dedupe_key(self, key: str) -> Any:
            if self.first is None:
                self.first = receive(source, signed_headers(NEW, body, delivery_id="msg_race"), body, store)
                return None
            return store.get_by_dedupe_key(key)

        def enqueue(self, *args: Any, **kwargs: Any) -> int:
            item_id: int = store.enqueue(*args, **kwargs)
            return item_id

    racing = Racing()
    second = receive(source, signed_headers(NEW, body, delivery_id="msg_race"), body, racing)
    assert racing.first.status == 202
    assert (second.status, second.item_id, second.trace_id) == (200, racing.first.item_id, racing.first.trace_id)
    assert store.stats()["pending"] == 1
