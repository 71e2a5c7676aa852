"""The seed's admin base classes and mixins, on the demo project's models."""

from __future__ import annotations

import csv
import io
import json
from typing import Any

import pytest
from django.contrib.admin.models import LogEntry
from django.contrib.auth.models import Permission, User
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client
from opsdemo.models import Customer, Order, OrderLine, Tenant

from headrace.django.admin_base import pretty_json, truncate

pytestmark = pytest.mark.django_db


def _staff(username: str, *perms: str, tenant: int | None = None) -> tuple[User, Client]:
    user = User.objects.create_user(username, password="pw", is_staff=True)
    for perm in perms:
        app, codename = perm.split(".")
        user.user_permissions.add(Permission.objects.get(content_type__app_label=app, codename=codename))
    client = Client(headers={"X-Tenant": str(tenant)} if tenant is not None else {})
    client.force_login(user)
    return user, client


def _changelist_rows(response: Any) -> list[str]:
    return [str(obj) for obj in response.context["cl"].result_list]


def test_base_admin_override_points_and_defaults(admin_client: Client) -> None:
    order = Order.objects.create(reference="A-1", amount=5)
    OrderLine.objects.create(order=order, product="pen")
    response = admin_client.get("/base-admin/opsdemo/order/")
    assert response.status_code == 200
    cl = response.context["cl"]
    # get_list_display returns a list, so the override can prepend; timestamps come last.
    assert list(cl.list_display)[1:] == ["amount", "reference", "status"]
    assert cl.model_admin.show_full_result_count is False
    assert cl.list_per_page == 50

    response = admin_client.get(f"/base-admin/opsdemo/order/{order.pk}/change/")
    assert response.status_code == 200
    readonly = response.context["adminform"].readonly_fields
    assert list(readonly) == ["created_at", "updated_at"]
    # The inline: no blank extra rows, the existing line shown, timestamps read-only.
    inline = response.context["inline_admin_formsets"][0]
    assert inline.formset.extra == 0
    assert len(inline.formset.forms) == 1
    assert "created_at" in inline.readonly_fields

    order.is_locked = True
    order.save()
    response = admin_client.get(f"/base-admin/opsdemo/order/{order.pk}/change/")
    assert list(response.context["adminform"].readonly_fields) == ["created_at", "updated_at", "reference", "amount"]


def test_base_admin_queryset_override(client: Client) -> None:
    Order.objects.create(reference="live", is_active=True)
    Order.objects.create(reference="archived", is_active=False)
    _, staff = _staff("viewer", "opsdemo.view_order")
    response = staff.get("/base-admin/opsdemo/order/")
    assert _changelist_rows(response) == ["live"]


def test_tenant_scoped_admin_shows_and_saves_only_the_tenants_rows() -> None:
    acme, globex = Tenant.objects.create(name="acme"), Tenant.objects.create(name="globex")
    Order.objects.create(reference="acme-1", tenant=acme)
    Order.objects.create(reference="globex-1", tenant=globex)
    Customer.objects.create(name="acme-customer", tenant=acme)
    Customer.objects.create(name="globex-customer", tenant=globex)
    perms = ("opsdemo.view_order", "opsdemo.change_order", "opsdemo.add_order")
    _, acme_client = _staff("acme-user", *perms, tenant=acme.pk)
    assert _changelist_rows(acme_client.get("/tenant-admin/opsdemo/order/")) == ["acme-1"]
    other = Order.objects.get(reference="globex-1")
    assert acme_client.get(f"/tenant-admin/opsdemo/order/{other.pk}/change/").status_code == 302  # not found → index

    # The add form offers only the tenant's customers and stamps the tenant on the new row.
    response = acme_client.get("/tenant-admin/opsdemo/order/add/")
    customers = response.context["adminform"].form.fields["customer"].queryset
    assert [c.name for c in customers] == ["acme-customer"]
    assert "tenant" in response.context["adminform"].readonly_fields
    response = acme_client.post(
        "/tenant-admin/opsdemo/order/add/", {"reference": "acme-2", "status": "new", "amount": 1}
    )
    assert response.status_code == 302, response.content
    assert Order.objects.get(reference="acme-2").tenant_id == acme.pk

    _, nobody = _staff("no-tenant", *perms)
    assert _changelist_rows(nobody.get("/tenant-admin/opsdemo/order/")) == []
    assert (
        nobody.post("/tenant-admin/opsdemo/order/add/", {"reference": "x", "status": "new", "amount": 1}).status_code
        == 403
    )


def test_tenant_scoped_admin_superuser_sees_every_tenant(admin_client: Client) -> None:
    acme, globex = Tenant.objects.create(name="acme"), Tenant.objects.create(name="globex")
    Order.objects.create(reference="acme-1", tenant=acme)
    Order.objects.create(reference="globex-1", tenant=globex)
    assert sorted(_changelist_rows(admin_client.get("/tenant-admin/opsdemo/order/"))) == ["acme-1", "globex-1"]


def test_auditable_admin_logs_field_changes(admin_client: Client) -> None:
    order = Order.objects.create(reference="A-1", amount=5)
    response = admin_client.post(
        f"/audit-admin/opsdemo/order/{order.pk}/change/",
        {"reference": "A-1", "status": "shipped", "amount": 7, "is_active": "on"},
    )
    assert response.status_code == 302
    entries = [json.loads(e.change_message)[0] for e in LogEntry.objects.filter(object_id=str(order.pk))]
    ours = [e["headrace"] for e in entries if "headrace" in e]
    assert len(ours) == 1 and len(entries) == 2  # ours, and Django's own "changed" entry
    body = ours[0]
    assert body["message"] == "changed"
    assert body["changes"]["status"] == ["new", "shipped"]
    assert body["changes"]["amount"] == [5, 7]
    assert "reference" not in body["changes"]


def test_bulk_actions_enable_disable_and_status_are_audited(admin_client: Client) -> None:
    a = Order.objects.create(reference="A", is_active=True)
    b = Order.objects.create(reference="B", is_active=True)
    url = "/audit-admin/opsdemo/order/"
    actions = dict(admin_client.get(url).context["action_form"].fields["action"].choices)
    assert {"bulk_disable", "bulk_enable", "bulk_status_new", "bulk_status_shipped", "bulk_status_cancelled"} <= set(
        actions
    )
    admin_client.post(url, {"action": "bulk_disable", "_selected_action": [a.pk, b.pk]})
    assert list(Order.objects.values_list("is_active", flat=True)) == [False, False]
    admin_client.post(url, {"action": "bulk_status_cancelled", "_selected_action": [a.pk]})
    assert Order.objects.get(pk=a.pk).status == "cancelled"
    messages = [json.loads(e.change_message)[0]["headrace"]["message"] for e in LogEntry.objects.order_by("pk")]
    assert messages == ["bulk set is_active", "bulk set is_active", "bulk set status"]


def test_bulk_actions_need_the_change_permission() -> None:
    Order.objects.create(reference="A")
    _, viewer = _staff("viewer", "opsdemo.view_order")
    response = viewer.get("/audit-admin/opsdemo/order/")
    assert response.status_code == 200
    assert response.context["action_form"] is None  # no action at all is offered


def test_export_csv_and_json(admin_client: Client) -> None:
    tenant = Tenant.objects.create(name="acme")
    a = Order.objects.create(reference="A, with comma", amount=3, tenant=tenant)
    b = Order.objects.create(reference="B", amount=4)
    url = "/io-admin/opsdemo/order/"
    response = admin_client.post(url, {"action": "export_as_csv", "_selected_action": [a.pk, b.pk]})
    assert response["Content-Type"].startswith("text/csv")
    assert "attachment" in response["Content-Disposition"]
    rows = sorted(csv.DictReader(io.StringIO(response.content.decode())), key=lambda r: int(r["id"]))
    assert rows == [
        {"id": str(a.pk), "reference": "A, with comma", "status": "new", "amount": "3", "tenant_id": str(tenant.pk)},
        {"id": str(b.pk), "reference": "B", "status": "new", "amount": "4", "tenant_id": ""},
    ]
    response = admin_client.post(url, {"action": "export_as_json", "_selected_action": [a.pk]})
    assert json.loads(response.content) == [
        {"id": a.pk, "reference": "A, with comma", "status": "new", "amount": 3, "tenant_id": tenant.pk}
    ]


def test_import_is_all_or_nothing_and_reports_each_row(admin_client: Client) -> None:
    url = "/io-admin/opsdemo/order/import/"
    assert admin_client.get("/io-admin/opsdemo/order/").status_code == 200
    bad = SimpleUploadedFile("orders.csv", b"reference,status,amount\nok,new,1\nbad,lost,x\n")
    response = admin_client.post(url, {"file": bad})
    assert response.status_code == 200
    errors = response.context["errors"]
    assert any(e.startswith("row 2, status:") for e in errors)
    assert any(e.startswith("row 2, amount:") for e in errors)
    assert Order.objects.count() == 0

    good = SimpleUploadedFile(
        "orders.json", json.dumps([{"reference": "j1", "status": "shipped", "amount": 2}]).encode()
    )
    response = admin_client.post(url, {"file": good})
    assert response.status_code == 302
    assert list(Order.objects.values_list("reference", "status", "amount")) == [("j1", "shipped", 2)]

    garbage = SimpleUploadedFile("orders.json", b"[not json")
    assert "not valid JSON" in admin_client.post(url, {"file": garbage}).context["errors"][0]


def test_import_needs_the_add_permission() -> None:
    _, viewer = _staff("viewer", "opsdemo.view_order")
    assert viewer.get("/io-admin/opsdemo/order/import/").status_code == 403


def test_soft_delete_hides_and_restores(admin_client: Client) -> None:
    a = Order.objects.create(reference="A")
    Order.objects.create(reference="B")
    url = "/soft-admin/opsdemo/order/"
    response = admin_client.post(url, {"action": "delete_selected", "_selected_action": [a.pk], "post": "yes"})
    assert response.status_code == 302
    assert Order.objects.count() == 2  # still there, only marked
    assert Order.objects.get(pk=a.pk).deleted_at is not None
    assert _changelist_rows(admin_client.get(url)) == ["B"]
    assert _changelist_rows(admin_client.get(url + "?deleted=yes")) == ["A"]
    assert sorted(_changelist_rows(admin_client.get(url + "?deleted=all"))) == ["A", "B"]
    admin_client.post(url + "?deleted=yes", {"action": "restore_selected", "_selected_action": [a.pk]})
    assert Order.objects.get(pk=a.pk).deleted_at is None

    b = Order.objects.get(reference="B")
    admin_client.post(f"{url}{b.pk}/delete/", {"post": "yes"})
    assert Order.objects.get(pk=b.pk).deleted_at is not None


def test_search_mixin_prefixes_phrases_and_pk(admin_client: Client) -> None:
    acme = Tenant.objects.create(name="acme")
    big = Order.objects.create(reference="late delivery", amount=100, status="shipped")
    Order.objects.create(reference="late order", amount=1, customer=Customer.objects.create(name="Zed", tenant=acme))
    Order.objects.create(reference="other", amount=50)
    url = "/mixins-admin/opsdemo/order/"
    assert _changelist_rows(admin_client.get(url, {"q": '"late delivery"'})) == ["late delivery"]
    assert _changelist_rows(admin_client.get(url, {"q": "status:shipped"})) == ["late delivery"]
    assert sorted(_changelist_rows(admin_client.get(url, {"q": "min:50"}))) == ["late delivery", "other"]
    assert _changelist_rows(admin_client.get(url, {"q": "min:50 late"})) == ["late delivery"]
    assert _changelist_rows(admin_client.get(url, {"q": "zed"})) == ["late order"]
    assert _changelist_rows(admin_client.get(url, {"q": str(big.pk)})) == ["late delivery"]
    assert admin_client.get(url, {"q": '"unbalanced'}).status_code == 200


def test_filter_mixin_builds_filters_from_the_model(admin_client: Client) -> None:
    acme = Tenant.objects.create(name="acme")
    Order.objects.create(reference="o", tenant=acme, customer=Customer.objects.create(name="c", tenant=acme))
    response = admin_client.get("/mixins-admin/opsdemo/order/")
    titles = [spec.title for spec in response.context["cl"].filter_specs]
    assert titles == [
        "tenant",
        "customer",
        "status",
        "is active",
        "is locked",
        "deleted at",
        "created at",
        "updated at",
    ]


def test_permission_mixin_object_rules_and_custom_permission() -> None:
    locked = Order.objects.create(reference="locked", is_locked=True)
    open_ = Order.objects.create(reference="open")
    _, editor = _staff("editor", "opsdemo.view_order", "opsdemo.change_order")
    response = editor.get(f"/mixins-admin/opsdemo/order/{locked.pk}/change/")
    assert response.status_code == 200
    assert response.context["has_change_permission"] is False  # viewable, not changeable
    assert editor.get(f"/mixins-admin/opsdemo/order/{open_.pk}/change/").context["has_change_permission"] is True
    assert (
        editor.post(
            f"/mixins-admin/opsdemo/order/{locked.pk}/change/", {"reference": "x", "status": "new", "amount": 0}
        ).status_code
        == 403
    )

    actions = dict(editor.get("/mixins-admin/opsdemo/order/").context["action_form"].fields["action"].choices)
    assert "approve" not in actions
    _, approver = _staff("approver", "opsdemo.view_order", "opsdemo.approve_order")
    actions = dict(approver.get("/mixins-admin/opsdemo/order/").context["action_form"].fields["action"].choices)
    assert "approve" in actions and "export_as_csv" in actions
    approver.post("/mixins-admin/opsdemo/order/", {"action": "approve", "_selected_action": [open_.pk]})
    assert Order.objects.get(pk=open_.pk).status == "shipped"


def test_helpers() -> None:
    assert truncate("abcdef", 4) == "abc…"
    assert truncate("abc", 4) == "abc"
    with pytest.raises(ValueError, match="limit must be >= 1"):
        truncate("x", 0)
    html = pretty_json('{"b": 1, "a": "<x>"}')
    assert html.startswith('<pre class="headrace-json">{\n  &quot;a&quot;: &quot;&lt;x&gt;&quot;')
    assert len(pretty_json({"k": "v" * 5000}, limit=100)) < 200
