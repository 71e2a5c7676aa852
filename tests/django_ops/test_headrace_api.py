"""headrace's REST API (on the seed's DRF base classes): outbox items with cursor pagination,
filters, requeue and its permission, the tenant filter and throttling (through a subclass, the
override points), invocations, runs, and the OpenAPI schema."""

from __future__ import annotations

from typing import Any

import pytest
from conftest import Items
from django.contrib.auth.models import Permission, User
from django.core.cache import cache
from rest_framework.test import APIClient

from headrace.django import enqueue
from headrace.django.models import OutboxItem

API = "/headrace/api/"


@pytest.fixture(autouse=True)
def _fresh_throttle_counters() -> None:
    cache.clear()


def _client(*perms: str, staff: bool = True, tenant: int | None = None, name: str = "api-user") -> APIClient:
    user = User.objects.create_user(name, password="pw", is_staff=staff)
    for perm in perms:
        app, codename = perm.split(".")
        user.user_permissions.add(Permission.objects.get(content_type__app_label=app, codename=codename))
    client = APIClient()
    client.force_authenticate(user)
    if tenant is not None:
        client.credentials(HTTP_X_TENANT=str(tenant))
    return client


def test_staff_only(items: Items) -> None:
    assert APIClient().get(API + "outbox/").status_code == 403
    assert _client(staff=False, name="not-staff").get(API + "outbox/").status_code == 403
    assert _client().get(API + "outbox/").status_code == 200


def test_cursor_pagination_walks_every_item_once(items: Items) -> None:
    client = _client()
    seen: list[int] = []
    url: str | None = API + "outbox/?page_size=3"
    pages = 0
    while url:
        body = client.get(url).json()
        assert set(body) == {"next", "previous", "results"}
        seen += [row["id"] for row in body["results"]]
        url = body["next"]
        pages += 1
    assert seen == sorted(OutboxItem.objects.values_list("pk", flat=True), reverse=True)
    assert pages == 3


def test_filters_and_retrieve(items: Items) -> None:
    client = _client()
    dead = client.get(API + "outbox/?state=dead").json()["results"]
    assert [(row["id"], row["state"], row["status"]) for row in dead] == [(items.dead, "dead", "failed")]
    assert [r["id"] for r in client.get(API + "outbox/?topic=orders.reminder").json()["results"]] == [items.scheduled]
    assert {r["id"] for r in client.get(API + "outbox/?status=processing").json()["results"]} == {
        items.in_flight,
        items.stalled,
    }
    assert client.get(API + "outbox/?state=bogus").status_code == 400
    one = client.get(f"{API}outbox/{items.ready}/").json()
    assert one["payload"]["order"] == 1 and one["dedupe_key"] == "order-1" and one["state"] == "ready"
    assert client.get(f"{API}outbox/999999/").status_code == 404


def test_requeue_needs_its_permission_and_goes_through_the_core(items: Items) -> None:
    assert _client(name="no-perm").post(f"{API}outbox/{items.dead}/requeue/").status_code == 403
    assert OutboxItem.objects.get(pk=items.dead).status == "failed"
    client = _client("headrace.requeue_outboxitem")
    response = client.post(f"{API}outbox/{items.dead}/requeue/")
    assert response.status_code == 200
    assert (response.json()["status"], response.json()["attempts"], response.json()["state"]) == ("pending", 0, "ready")
    busy = client.post(f"{API}outbox/{items.in_flight}/requeue/")
    assert busy.status_code == 409 and busy.json()["item"]["status"] == "processing"


def test_tenant_filter_through_a_payload_key(db: Any) -> None:
    mine = enqueue("t.a", {"tenant": 1, "n": 1})
    enqueue("t.a", {"tenant": 2, "n": 2})
    client = _client(tenant=1)
    body = client.get("/demo-api/tenant-outbox/").json()
    assert [r["id"] for r in body["results"]] == [mine]
    assert _client(name="no-tenant").get("/demo-api/tenant-outbox/").json()["results"] == []


def test_throttling(db: Any) -> None:
    client = _client(tenant=1)
    codes = [client.get("/demo-api/tenant-outbox/").status_code for _ in range(5)]
    assert codes == [200, 200, 200, 200, 429]
    refused = client.get("/demo-api/tenant-outbox/")
    assert int(refused["Retry-After"]) > 0


def test_invocations(committed: Any) -> None:
    from headrace.django import db
    from headrace.state import Invocation, InvocationStatus

    state = db.open_state()
    try:
        inv = Invocation("shop.send_mail", {"to": "a@example.com"}, invocation_id="inv-1")
        state.upsert_invocation(inv)
        state.add_history(inv, InvocationStatus.PENDING)
        state.add_history(inv, InvocationStatus.RUNNING)
        state.wait_for_all_async_operations()
    finally:
        state.close()
    client = _client()
    listing = client.get(API + "invocations/?task=shop.").json()
    assert [r["invocation_id"] for r in listing["results"]] == ["inv-1"]
    one = client.get(API + "invocations/inv-1/").json()
    assert one["arguments"] == {"to": "a@example.com"}
    assert [h["status"] for h in one["history"]] == ["pending", "running"]


def test_runs(committed: Any) -> None:
    from headrace.django.policies import open_policies
    from headrace.runner import NullSink, PolicyManager

    policies = open_policies()
    policies.save("r1", {"config": {"package": "opsdemo.backends"}, "scope": {"count": 3}})
    manager = PolicyManager(state=policies.state, sink=NullSink())
    try:
        manager.start_policies({"policies": {"r1": policies.get("r1")}}, schedule=False)
        run = manager.run_now("r1")
    finally:
        manager.stop()
        policies.state.close()
    client = _client()
    body = client.get(API + "runs/").json()
    assert [(r["id"], r["entity_count"]) for r in body["results"]] == [(run.id, 3)]
    assert client.get(API + "runs/r1/").json()["runs"][0]["status"] == "completed"
    assert client.get(API + "runs/ghost/").status_code == 404


def test_openapi_schema(db: Any) -> None:
    response = _client("headrace.requeue_outboxitem").get(
        API + "schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json"
    )
    assert response.status_code == 200
    schema = response.json()
    assert schema["openapi"].startswith("3.")
    assert "/headrace/api/outbox/" in schema["paths"]
    assert "/headrace/api/outbox/{id}/requeue/" in schema["paths"]
    assert APIClient().get(API + "schema/").status_code == 403
