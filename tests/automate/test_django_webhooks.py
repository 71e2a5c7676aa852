"""The Django ``WebhookView``: signed deliveries into the outbox on Django's connection, 202 with a
trace id, 401/400/413 storing nothing, then a workflow run with the Django signals fired once each."""

from __future__ import annotations

import json
import os
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

django = pytest.importorskip("django") if os.environ.get("CI") != "true" else __import__("django")

from automate_django import OLD_SECRET, SECRET  # noqa: E402
from automate_django import event_items as _items  # noqa: E402
from automate_django import post as _post  # noqa: E402


@pytest.fixture(scope="module")
def django_app() -> Any:
    import automate_django

    return automate_django.setup()


def test_signed_deliveries_are_stored_once_and_bad_ones_not_at_all(django_app: Any) -> None:
    from django.test import Client

    from headrace.webhooks import signed_headers

    client = Client()
    before = len(_items())
    body = json.dumps({"type": "order.created", "order": {"id": "DJ1", "total": 10}}).encode()
    ok = _post(client, "shop", body, signed_headers(SECRET, body, delivery_id="msg_dj1"))
    assert ok.status_code == 202, ok.content
    trace_id = ok.json()["trace_id"]
    assert ok["X-Trace-Id"] == trace_id
    rotated = _post(client, "shop", body, signed_headers(OLD_SECRET, body, delivery_id="msg_dj1"))
    assert rotated.status_code == 200, "the old secret still verifies during rotation; a replay is not stored"
    assert rotated.json() == {"status": "duplicate", "trace_id": trace_id, "event_id": "shop:msg_dj1"}
    assert rotated["X-Trace-Id"] == trace_id
    statuses = [
        _post(client, "shop", body, {**signed_headers(SECRET, body), "webhook-signature": "v1,Zm9v"}).status_code,
        _post(client, "shop", body, {}).status_code,
        _post(client, "shop", body, signed_headers(SECRET, body, timestamp=int(time.time()) - 600)).status_code,
        _post(client, "shop", b"not json", signed_headers(SECRET, b"not json")).status_code,
        _post(client, "shop", b"x" * 5000, signed_headers(SECRET, b"x" * 5000)).status_code,
        _post(client, "closed", body, signed_headers(SECRET, body)).status_code,
        client.get("/hooks/shop/").status_code,
    ]
    assert statuses == [401, 401, 401, 400, 413, 401, 405]
    rows = _items()
    assert len(rows) == before + 1, "one stored event for the delivery and its replay, none for the rest"
    assert rows[-1]["trace_id"] == trace_id and rows[-1]["payload"]["delivery_id"] == "msg_dj1"


def test_a_workflow_runs_from_the_view_with_django_signals_fired_once(
    django_app: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import automate_django
    import automate_helpers as h
    from django.test import Client

    from headrace.django import workflow_signals as dj
    from headrace.webhooks import signed_headers

    monkeypatch.setenv("HR_TEST_CALLS", str(tmp_path / "calls.jsonl"))
    monkeypatch.setenv("HR_TEST_CHARGE_FAILURES", "0")
    counts: Counter[str] = Counter()
    receivers = {}
    for name in dj.__all__:

        def receiver(sender: Any, _name: str = name, **kwargs: Any) -> None:
            event = kwargs["event"] if "event" in kwargs else kwargs["execution"].event
            if event["payload"]["order"]["id"] == "DJ2":  # the first test's event is processed too
                counts[_name] += 1

        receivers[name] = receiver
        getattr(dj, name).connect(receiver, weak=False)
    try:
        with automate_django.core_stores() as (store, state):
            engine = h.engine(store, state)
            worker = automate_django.events_worker(store, engine)  # the first test's event runs without failures
            # The next charge call (DJ2's first) fails once, transiently.
            charges = [c for c in h.calls(tmp_path / "calls.jsonl") if c["action"] == "charge"]
            monkeypatch.setenv("HR_TEST_CHARGE_FAILURES", str(len(charges) + 1))
            body = json.dumps({"type": "order.created", "order": {"id": "DJ2", "total": 99}}).encode()
            accepted = _post(Client(), "shop", body, signed_headers(SECRET, body, delivery_id="msg_dj2"))
            assert accepted.status_code == 202
            for _ in range(50):
                worker.run_until_empty(timeout=10)
                runs = [r for r in engine.executions("order_pipeline") if r.event["payload"]["order"]["id"] == "DJ2"]
                if runs and runs[0].status in ("completed", "failed"):
                    break
                time.sleep(0.05)
            assert runs[0].status == "completed"
            # The sender replays the delivery after it was processed: recognised, not stored, not run.
            stored = len(_items())
            replay = _post(Client(), "shop", body, signed_headers(SECRET, body, delivery_id="msg_dj2"))
            assert replay.status_code == 200 and replay.json()["trace_id"] == accepted.json()["trace_id"]
            assert len(_items()) == stored
            worker.run_until_empty(timeout=10)
            assert (
                len([r for r in engine.executions("order_pipeline") if r.event["payload"]["order"]["id"] == "DJ2"]) == 1
            )
            pages = automate_django.admin_pages()
            for secret in (h.STRIPE_KEY, h.SLACK_TOKEN):
                assert [url for url, text in pages.items() if secret in text] == [], "a secret on an admin page"
            assert counts == Counter(
                event_received=1,
                workflow_started=1,
                step_started=4,
                step_completed=3,
                step_failed=1,
                workflow_completed=1,
            )
    finally:
        for name, receiver in receivers.items():
            getattr(dj, name).disconnect(receiver)
