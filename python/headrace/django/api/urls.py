"""Routes of the REST API (included by ``headrace.django.urls`` under ``api/``)."""

from __future__ import annotations

from typing import Any

from django.urls import include, path
from rest_framework import permissions
from rest_framework.routers import DefaultRouter
from rest_framework.schemas import get_schema_view

from headrace.django.api.views import InvocationViewSet, OutboxItemViewSet, RunViewSet

router = DefaultRouter()
router.register("outbox", OutboxItemViewSet, basename="outbox-item")
router.register("invocations", InvocationViewSet, basename="invocation")
router.register("runs", RunViewSet, basename="run")

urlpatterns: list[Any] = [
    path(
        "schema/",
        get_schema_view(
            title="headrace API",
            description="Outbox items, invocations and policy runs.",
            permission_classes=[permissions.IsAdminUser],
        ),
        name="schema",
    ),
    path("", include(router.urls)),
]
