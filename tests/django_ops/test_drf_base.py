"""The seed's DRF base classes and mixins, on the demo project's endpoints."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import User
from django.core.cache import cache
from opsdemo.models import Order, Tenant
from rest_framework.test import APIClient

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _fresh_throttle_counters() -> None:
    cache.clear()


def _client(user: User | None = None, tenant: int | None = None) -> APIClient:
    client = APIClient()
    if tenant is not None:
        client.credentials(HTTP_X_TENANT=str(tenant))
    if user is not None:
        client.force_authenticate(user)
    return client


def test_anonymous_requests_are_refused() -> None:
    assert _client().get("/demo-api/orders/").status_code == 403
    assert _client().get("/demo-api/ping/").status_code == 403


def test_cursor_pagination_walks_every_row_once_newest_first() -> None:
    tenant = Tenant.objects.create(name="acme")
    made = [Order.objects.create(reference=f"o{i}", tenant=tenant).pk for i in range(7)]
    client = _client(User.objects.create_user("u"), tenant=tenant.pk)
    seen: list[int] = []
    url: str | None = "/demo-api/orders/"
    pages = 0
    while url:
        body = client.get(url).json()
        assert set(body) == {"next", "previous", "results"}
        assert len(body["results"]) <= 3
        seen += [row["id"] for row in body["results"]]
        url = body["next"]
        pages += 1
        if pages == 1:
            Order.objects.create(reference="inserted-meanwhile", tenant=tenant)  # cursors stay stable
    assert seen == sorted(made, reverse=True)
    assert pages == 3
    assert len(client.get("/demo-api/orders/?page_size=5").json()["results"]) == 5


def test_offset_pagination() -> None:
    for i in range(5):
        Order.objects.create(reference=f"o{i}")
    body = _client(User.objects.create_user("u")).get("/demo-api/offset-orders/?offset=2").json()
    assert body["count"] == 5
    assert len(body["results"]) == 2


def test_tenant_filter_scopes_reads_and_stamps_writes() -> None:
    acme, globex = Tenant.objects.create(name="acme"), Tenant.objects.create(name="globex")
    Order.objects.create(reference="acme-1", tenant=acme)
    theirs = Order.objects.create(reference="globex-1", tenant=globex)
    user = User.objects.create_user("u")
    client = _client(user, tenant=acme.pk)
    assert [r["reference"] for r in client.get("/demo-api/orders/").json()["results"]] == ["acme-1"]
    assert client.get(f"/demo-api/orders/{theirs.pk}/").status_code == 404
    created = client.post("/demo-api/orders/", {"reference": "acme-2", "tenant": globex.pk}, format="json")
    assert created.status_code == 201
    assert Order.objects.get(reference="acme-2").tenant_id == acme.pk  # the request's tenant, not the body's

    no_tenant = _client(user)
    assert no_tenant.get("/demo-api/orders/").json()["results"] == []
    assert no_tenant.post("/demo-api/orders/", {"reference": "x"}, format="json").status_code == 403


def test_get_permissions_override_per_action() -> None:
    tenant = Tenant.objects.create(name="acme")
    order = Order.objects.create(reference="o", tenant=tenant)
    user = User.objects.create_user("u")
    assert _client(user, tenant=tenant.pk).delete(f"/demo-api/orders/{order.pk}/").status_code == 403
    staff = User.objects.create_user("s", is_staff=True)
    assert _client(staff, tenant=tenant.pk).delete(f"/demo-api/orders/{order.pk}/").status_code == 204


def test_permission_classes_by_action_on_an_api_view() -> None:
    user = _client(User.objects.create_user("u"))
    assert user.get("/demo-api/ping/").json() == {"pong": True}
    assert user.post("/demo-api/ping/").status_code == 403
    assert _client(User.objects.create_user("s", is_staff=True)).post("/demo-api/ping/").json() == {"pong": "admin"}


def test_rate_limit_per_user_with_retry_after() -> None:
    Order.objects.create(reference="o")
    alice = _client(User.objects.create_user("alice"))
    codes = [alice.get("/demo-api/limited-orders/").status_code for _ in range(4)]
    assert codes == [200, 200, 200, 429]
    refused = alice.get("/demo-api/limited-orders/")
    assert int(refused["Retry-After"]) > 0
    # Another user has a budget of their own.
    assert _client(User.objects.create_user("bob")).get("/demo-api/limited-orders/").status_code == 200


def test_cors_headers_only_for_allowed_origins() -> None:
    client = _client(User.objects.create_user("u"))
    allowed = client.get("/demo-api/limited-orders/", HTTP_ORIGIN="https://shop.example")
    assert allowed["Access-Control-Allow-Origin"] == "https://shop.example"
    assert "Origin" in allowed["Vary"]
    refused = client.get("/demo-api/limited-orders/", HTTP_ORIGIN="https://evil.example")
    assert "Access-Control-Allow-Origin" not in refused
    preflight = client.options("/demo-api/limited-orders/", HTTP_ORIGIN="https://shop.example")
    assert "GET" in preflight["Access-Control-Allow-Methods"]
    assert "content-type" in preflight["Access-Control-Allow-Headers"]
