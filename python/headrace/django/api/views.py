"""The REST endpoints. Staff only by default (``permission_classes``); requeueing also needs
``headrace.requeue_outboxitem``. Subclass to change the tenant field, the rate or the
permissions (the seed's override points ``get_permissions`` and ``get_throttles`` work as usual).
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

from django.db.models import QuerySet
from rest_framework import permissions, serializers, status
from rest_framework.decorators import action
from rest_framework.exceptions import NotFound, ValidationError
from rest_framework.request import Request
from rest_framework.response import Response

from headrace.django import operations
from headrace.django.drf_base import BaseReadOnlyViewSet, BaseViewSet, RateLimitMixin, TenantFilterMixin
from headrace.django.models import Invocation, OutboxItem

__all__ = [
    "CanRequeue",
    "InvocationSerializer",
    "InvocationViewSet",
    "OutboxItemSerializer",
    "OutboxItemViewSet",
    "RunSerializer",
    "RunViewSet",
]


class OutboxItemSerializer(serializers.ModelSerializer):  # type: ignore[type-arg]
    state = serializers.SerializerMethodField()

    class Meta:
        model = OutboxItem
        fields = (
            "id",
            "topic",
            "state",
            "status",
            "priority",
            "attempts",
            "max_attempts",
            "run_at",
            "lease_owner",
            "lease_expires_at",
            "last_error",
            "dedupe_key",
            "trace_id",
            "payload",
            "created_at",
            "updated_at",
        )

    def get_state(self, obj: OutboxItem) -> str:
        return operations.state_of(obj, datetime.now(timezone.utc))


class InvocationSerializer(serializers.ModelSerializer):  # type: ignore[type-arg]
    class Meta:
        model = Invocation
        fields = (
            "invocation_id",
            "task_id",
            "status",
            "workflow_id",
            "workflow_type",
            "parent_invocation_id",
            "arguments",
            "result",
            "exception",
            "created_at",
            "updated_at",
        )


class RunSerializer(serializers.Serializer):  # type: ignore[type-arg]
    """A policy run (``headrace.runner.Run``)."""

    id = serializers.CharField()
    policy_id = serializers.CharField()
    status = serializers.CharField()
    reason = serializers.CharField(allow_null=True)
    entity_count = serializers.IntegerField()
    metadata = serializers.DictField()
    source = serializers.CharField()  # type: ignore[assignment]  # a declared field, popped by the metaclass
    created_at = serializers.DateTimeField()
    updated_at = serializers.DateTimeField()


class CanRequeue(permissions.BasePermission):
    """The user holds ``headrace.requeue_outboxitem`` (the admin action's permission)."""

    def has_permission(self, request: Request, view: Any) -> bool:
        user: Any = request.user
        return bool(user and user.is_authenticated and user.has_perm("headrace.requeue_outboxitem"))


class _ScopedMixin(TenantFilterMixin):
    """The tenant filter, off while ``tenant_field`` is ``None`` (the core's tables have no
    tenant column: point it at a payload key, e.g. ``"payload__tenant_id"``)."""

    tenant_field: Any = None

    def get_queryset(self) -> QuerySet[Any]:
        if self.tenant_field is None:
            return super(TenantFilterMixin, self).get_queryset()
        return super().get_queryset()


class OutboxItemViewSet(_ScopedMixin, RateLimitMixin, BaseReadOnlyViewSet):
    """``GET outbox/`` (``?status=``, ``?topic=``, ``?state=`` an operational state), ``GET
    outbox/<id>/``, ``POST outbox/<id>/requeue/`` (200 with the item, 409 when it cannot be
    requeued now)."""

    queryset = OutboxItem.objects.all()
    serializer_class = OutboxItemSerializer
    permission_classes = (permissions.IsAdminUser,)
    permission_classes_by_action = {"requeue": (permissions.IsAdminUser, CanRequeue)}  # noqa: RUF012
    pagination_ordering = "-id"
    rate_limit = "600/min"
    rate_limit_scope = "headrace-outbox"

    def get_queryset(self) -> QuerySet[Any]:
        queryset = super().get_queryset()
        params = self.request.query_params
        if params.get("status"):
            queryset = queryset.filter(status=params["status"])
        if params.get("topic"):
            queryset = queryset.filter(topic=params["topic"])
        if params.get("state"):
            if params["state"] not in operations.OPERATIONAL_STATES:
                raise ValidationError({"state": f"one of {', '.join(operations.OPERATIONAL_STATES)}"})
            queryset = queryset.filter(operations.state_filter(params["state"], datetime.now(timezone.utc)))
        return queryset

    @action(detail=True, methods=["post"])
    def requeue(self, request: Request, pk: str | None = None) -> Response:
        item = self.get_object()
        result = operations.requeue_items([item.pk], using=item._state.db)
        item.refresh_from_db()
        body = self.get_serializer(item).data
        if not result.changed:
            detail = "in flight, held, or its dedupe key is taken by a live item"
            return Response({"detail": f"item {item.pk} was not requeued: {detail}", "item": body}, status=409)
        return Response(body, status=status.HTTP_200_OK)


class InvocationViewSet(_ScopedMixin, RateLimitMixin, BaseReadOnlyViewSet):
    """``GET invocations/`` (``?task=`` a task id prefix, ``?status=``), ``GET invocations/<id>/``
    by invocation id, with the status history."""

    queryset = Invocation.objects.all()
    serializer_class = InvocationSerializer
    permission_classes = (permissions.IsAdminUser,)
    lookup_field = "invocation_id"
    lookup_value_regex = "[^/]+"
    pagination_ordering = "-seq"
    rate_limit = "600/min"
    rate_limit_scope = "headrace-invocations"

    def get_queryset(self) -> QuerySet[Any]:
        queryset = super().get_queryset()
        params = self.request.query_params
        if params.get("task"):
            queryset = queryset.filter(task_id__startswith=params["task"])
        if params.get("status"):
            queryset = queryset.filter(status=params["status"])
        return queryset

    def retrieve(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        from headrace.django.models import InvocationHistory

        invocation = self.get_object()
        history = InvocationHistory.objects.using(invocation._state.db).filter(invocation_id=invocation.invocation_id)
        body = dict(self.get_serializer(invocation).data)
        body["history"] = [
            {"status": h.status, "timestamp": h.timestamp.isoformat(), "execution_context": h.execution_context}
            for h in history.order_by("timestamp", "seq")
        ]
        return Response(body)


class RunViewSet(RateLimitMixin, BaseViewSet):
    """``GET runs/`` (``?policy=``; default every stored policy) and ``GET runs/<policy>/``:
    policy runs from the run store, newest first (the store keeps the latest runs per policy)."""

    permission_classes = (permissions.IsAdminUser,)
    serializer_class = RunSerializer
    lookup_value_regex = "[^/]+"
    rate_limit = "600/min"
    rate_limit_scope = "headrace-runs"
    pagination_style = "offset"

    def _runs(self, names: list[str] | None) -> list[dict[str, Any]]:
        from headrace.django.policies import open_policies
        from headrace.django.policy_api import run_json

        policies = open_policies()
        try:
            chosen = names if names is not None else sorted(policies.all())
            return [run_json(r) for name in chosen for r in policies.runs(name, 100)]
        finally:
            policies.state.close()

    def list(self, request: Request) -> Response:
        name = request.query_params.get("policy")
        runs = self._runs([name] if name else None)
        page = self.paginate_queryset(runs)  # type: ignore[arg-type]
        return self.get_paginated_response(page) if page is not None else Response(runs)

    def retrieve(self, request: Request, pk: str | None = None) -> Response:
        runs = self._runs([str(pk)])
        if not runs:
            raise NotFound(f"no runs recorded for policy {pk!r}")
        return Response({"policy": pk, "runs": runs})
