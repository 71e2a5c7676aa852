"""The demo's admins: one admin site per base class, all over the same models."""

from typing import Any

from django.contrib import admin
from django.http import HttpRequest

from headrace.django.admin_base import (
    AuditableModelAdmin,
    BaseModelAdmin,
    BulkActionsMixin,
    ExportMixin,
    FilterMixin,
    ImportExportBaseAdmin,
    InlineBaseAdmin,
    PermissionMixin,
    SearchMixin,
    SoftDeleteAdmin,
    StackedInlineBaseAdmin,
    TenantScopedAdmin,
)

from .models import Customer, Order, OrderLine, Tenant

base_site = admin.AdminSite(name="base")
tenant_site = admin.AdminSite(name="tenant")
audit_site = admin.AdminSite(name="audit")
io_site = admin.AdminSite(name="io")
soft_site = admin.AdminSite(name="soft")
mixins_site = admin.AdminSite(name="mixins")


class OrderLineInline(InlineBaseAdmin):
    model = OrderLine


class OrderLineStacked(StackedInlineBaseAdmin):
    model = OrderLine


@admin.register(Order, site=base_site)
class OrderAdmin(BaseModelAdmin):
    """Uses the seed's three override points."""

    list_display = ["reference", "status"]
    inlines = [OrderLineInline]

    def get_list_display(self, request: HttpRequest) -> list[Any]:
        display = super().get_list_display(request)
        return ["amount", *display]

    def get_queryset(self, request: HttpRequest) -> Any:
        qs = super().get_queryset(request)
        if not request.user.is_superuser:
            qs = qs.filter(is_active=True)
        return qs

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> list[str]:
        readonly = super().get_readonly_fields(request, obj)
        if obj and obj.is_locked:
            readonly = readonly + ["reference", "amount"]  # noqa: RUF005 (the seed's idiom)
        return readonly


@admin.register(Order, site=tenant_site)
class TenantOrderAdmin(TenantScopedAdmin):
    list_display = ["reference", "tenant", "customer"]
    fields = ["reference", "tenant", "customer", "status", "amount"]


@admin.register(Order, site=audit_site)
class AuditOrderAdmin(BulkActionsMixin, AuditableModelAdmin):
    list_display = ["reference", "status", "is_active"]
    fields = ["reference", "status", "amount", "is_active"]
    bulk_enable_field = "is_active"
    bulk_status_field = "status"


@admin.register(Order, site=io_site)
class IOOrderAdmin(ImportExportBaseAdmin):
    list_display = ["reference", "status", "amount"]
    fields = ["reference", "status", "amount"]
    export_fields = ["id", "reference", "status", "amount", "tenant_id"]
    import_fields = ["reference", "status", "amount"]
    inlines = [OrderLineStacked]


@admin.register(Order, site=soft_site)
class SoftOrderAdmin(SoftDeleteAdmin):
    list_display = ["reference", "deleted_at"]


@admin.register(Order, site=mixins_site)
class MixinOrderAdmin(PermissionMixin, SearchMixin, FilterMixin, ExportMixin, BaseModelAdmin):
    list_display = ["reference", "status", "amount"]
    search_fields = ["reference", "customer__name"]
    search_lookups = {"status": "status", "min": "amount__gte"}
    custom_permissions = ("approve",)
    actions = ["approve"]

    def has_object_permission(self, request: HttpRequest, obj: Any, action: str) -> bool:
        # Locked orders can be looked at but not changed or deleted.
        return action == "view" or not obj.is_locked

    @admin.action(description="Approve selected orders", permissions=["approve"])
    def approve(self, request: HttpRequest, queryset: Any) -> None:
        queryset.update(status="shipped")


for site in (base_site, tenant_site, audit_site, io_site, soft_site, mixins_site):
    site.register(Tenant)
    site.register(Customer)
