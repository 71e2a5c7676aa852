"""Bridges: the next sync, the last run and its error, and "run now" (the bridge's schedule item
made due; a worker's bridge loop runs it within a poll interval)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest

from headrace.django import operations
from headrace.django.admin.audit import log_admin_change
from headrace.django.admin_base import BaseModelAdmin, PermissionMixin, truncate
from headrace.django.models import Bridge
from headrace.worker import BRIDGE_TOPIC

__all__ = ["BridgeAdmin"]


@admin.register(Bridge)
class BridgeAdmin(PermissionMixin, BaseModelAdmin):
    """Permissions: view, and ``headrace.run_now_bridge`` for "run now"."""

    list_display = ["bridge_key", "next_sync", "last_run", "runs", "running", "last_error_short"]
    fields = ["bridge_key", "next_sync", "last_run", "runs", "running", "last_error"]
    search_fields = ["=dedupe_key"]
    custom_permissions = ("run_now",)
    actions = ["run_now"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> list[str]:
        return [str(name) for name in self.fields or []]

    def get_queryset(self, request: HttpRequest) -> QuerySet[Any]:
        return super().get_queryset(request).filter(topic=BRIDGE_TOPIC).defer("payload")

    @admin.display(description="bridge", ordering="dedupe_key")
    def bridge_key(self, obj: Bridge) -> str:
        return (obj.dedupe_key or "").removeprefix("bridge:")

    @admin.display(description="next sync", ordering="run_at")
    def next_sync(self, obj: Bridge) -> datetime | None:
        return obj.run_at if obj.status == "pending" else None

    @admin.display(description="last run", ordering="updated_at")
    def last_run(self, obj: Bridge) -> datetime | None:
        return obj.updated_at if obj.attempts > 0 else None

    @admin.display(description="runs", ordering="attempts")
    def runs(self, obj: Bridge) -> int:
        return int(obj.attempts)

    @admin.display(description="running", boolean=True)
    def running(self, obj: Bridge) -> bool:
        return bool(obj.status == "processing")

    @admin.display(description="last error")
    def last_error_short(self, obj: Bridge) -> str:
        return truncate(obj.last_error, 120) if obj.attempts > 0 and obj.last_error else "—"

    @admin.action(description="Run selected bridges now", permissions=["run_now"])
    def run_now(self, request: HttpRequest, queryset: QuerySet[Any]) -> None:
        ids = [int(pk) for pk in queryset.values_list("pk", flat=True)]
        result = operations.run_items_now(ids)
        log_admin_change(request, Bridge, result.changed, "Made due now from the admin.")
        if result.changed:
            self.message_user(
                request, f"{len(result.changed)} bridge(s) due now; a worker runs them shortly.", messages.SUCCESS
            )
        if result.skipped:
            self.message_user(
                request, f"{len(result.skipped)} bridge(s) were running or due already.", messages.WARNING
            )
