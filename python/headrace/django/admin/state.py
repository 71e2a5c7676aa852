"""Read-only admin pages over the state backend: workers (heartbeat and the leases they hold),
invocations with their status history, and workflow runs."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

from django.contrib import admin
from django.db.models import Count, IntegerField, OuterRef, QuerySet, Subquery, Value
from django.db.models.functions import Coalesce, Substr
from django.http import HttpRequest
from django.utils.html import format_html, format_html_join

from headrace.django.admin_base import BaseModelAdmin, SearchMixin, pretty_json
from headrace.django.models import Invocation, InvocationHistory, OutboxItem, Worker, WorkflowRun
from headrace.django.operations import age_text

__all__ = ["InvocationAdmin", "WorkerAdmin", "WorkflowRunAdmin"]

#: App-info ids of worker heartbeats (``headrace.django.worker.HEARTBEAT_PREFIX``).
_HEARTBEAT_PREFIX = "headrace.worker:"


class _ReadOnly(BaseModelAdmin):
    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


def _heartbeat(obj: Any) -> datetime | None:
    stamp = (obj.metadata or {}).get("heartbeat") if isinstance(obj.metadata, dict) else None
    if not stamp:
        return None
    moment = datetime.fromisoformat(stamp)
    return moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)


@admin.register(Worker)
class WorkerAdmin(_ReadOnly):
    """Workers that ever beat, with the age of their last heartbeat and the leases they hold
    (one query for the page)."""

    list_display = ["worker_id", "heartbeat", "heartbeat_age", "alive", "leases"]
    fields = ["worker_id", "heartbeat", "heartbeat_age", "alive", "leases", "module"]
    search_fields = ["app_id"]

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> list[str]:
        return [str(name) for name in self.fields or []]

    def get_queryset(self, request: HttpRequest) -> QuerySet[Any]:
        held = (
            OutboxItem.objects.filter(
                status="processing", lease_owner=Substr(OuterRef("app_id"), len(_HEARTBEAT_PREFIX) + 1)
            )
            .order_by()
            .values("lease_owner")
            .annotate(n=Count("id"))
            .values("n")
        )
        return (
            super()
            .get_queryset(request)
            .filter(app_id__startswith=_HEARTBEAT_PREFIX)
            .annotate(lease_count=Coalesce(Subquery(held, output_field=IntegerField()), Value(0)))
        )

    @admin.display(description="worker", ordering="app_id")
    def worker_id(self, obj: Any) -> str:
        return str(obj.app_id)[len(_HEARTBEAT_PREFIX) :]

    @admin.display(description="last heartbeat")
    def heartbeat(self, obj: Any) -> datetime | None:
        return _heartbeat(obj)

    @admin.display(description="heartbeat age")
    def heartbeat_age(self, obj: Any) -> str:
        beat = _heartbeat(obj)
        return age_text((datetime.now(timezone.utc) - beat).total_seconds()) if beat else "—"

    @admin.display(description="alive", boolean=True)
    def alive(self, obj: Any) -> bool:
        from headrace.django.conf import get_settings

        beat = _heartbeat(obj)
        limit = get_settings().HEARTBEAT_MAX_AGE
        return beat is not None and (datetime.now(timezone.utc) - beat).total_seconds() <= limit

    @admin.display(description="leases held")
    def leases(self, obj: Any) -> int:
        return int(getattr(obj, "lease_count", 0) or 0)


@admin.register(Invocation)
class InvocationAdmin(SearchMixin, _ReadOnly):
    """Invocations (dispatches, policy runs, tasks) with their status history."""

    list_display = ["invocation_id", "task_id", "status", "workflow_type", "created_at", "updated_at"]
    list_filter = ["status"]
    search_fields = ["=invocation_id", "=task_id", "=workflow_id"]
    search_by_pk = False
    search_lookups = {"task": "task_id__startswith", "workflow": "workflow_id"}
    fields = [
        "invocation_id",
        "task_id",
        "status",
        "workflow_id",
        "workflow_type",
        "parent_workflow_id",
        "parent_invocation_id",
        "arguments_pretty",
        "result_pretty",
        "exception_pretty",
        "status_history",
        "created_at",
        "updated_at",
    ]

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> list[str]:
        return [str(name) for name in self.fields or []]

    @admin.display(description="arguments")
    def arguments_pretty(self, obj: Invocation) -> str:
        return pretty_json(obj.arguments)

    @admin.display(description="result")
    def result_pretty(self, obj: Invocation) -> str:
        return pretty_json(obj.result) if obj.result is not None else "—"

    @admin.display(description="exception")
    def exception_pretty(self, obj: Invocation) -> str:
        return pretty_json(obj.exception) if obj.exception is not None else "—"

    @admin.display(description="status history")
    def status_history(self, obj: Invocation) -> str:
        rows = InvocationHistory.objects.using(obj._state.db or "default").filter(invocation_id=obj.invocation_id)
        cells = [
            (f"{row.timestamp:%Y-%m-%d %H:%M:%S.%f}", row.status or "—", pretty_json(row.execution_context, 400))
            for row in rows.order_by("timestamp", "seq")
        ]
        if not cells:
            return "—"
        return format_html(
            '<table class="headrace-history"><thead><tr><th>when</th><th>status</th><th>context</th></tr>'
            "</thead><tbody>{}</tbody></table>",
            format_html_join("", "<tr><td>{}</td><td>{}</td><td>{}</td></tr>", cells),
        )


@admin.register(WorkflowRun)
class WorkflowRunAdmin(_ReadOnly):
    """Workflow runs (policies register as ``headrace.policy``)."""

    list_display = ["workflow_id", "workflow_type", "parent_workflow_id"]
    list_filter = ["workflow_type"]
    search_fields = ["=workflow_id", "=workflow_type"]
    fields = ["workflow_id", "workflow_type", "parent_workflow_id", "invocations"]

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> list[str]:
        return [str(name) for name in self.fields or []]

    @admin.display(description="invocations")
    def invocations(self, obj: WorkflowRun) -> str:
        rows = (
            Invocation.objects.using(obj._state.db or "default")
            .filter(workflow_id=obj.workflow_id)
            .order_by("-seq")
            .values_list("invocation_id", "task_id", "status")[:100]
        )
        if not rows:
            return "—"
        return format_html(
            "<table><tbody>{}</tbody></table>",
            format_html_join("", "<tr><td>{}</td><td>{}</td><td>{}</td></tr>", rows),
        )
