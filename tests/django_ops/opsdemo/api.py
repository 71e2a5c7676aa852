"""The demo's REST endpoints, built on headrace's DRF base classes."""

from typing import Any

from django.urls import include, path
from rest_framework import permissions, serializers
from rest_framework.response import Response
from rest_framework.routers import DefaultRouter

from headrace.django.api.views import OutboxItemViewSet
from headrace.django.drf_base import (
    BaseAPIView,
    BaseModelViewSet,
    BaseReadOnlyViewSet,
    CORSMixin,
    RateLimitMixin,
    TenantFilterMixin,
)

from .models import Order


class OrderSerializer(serializers.ModelSerializer):  # type: ignore[type-arg]
    class Meta:
        model = Order
        fields = ["id", "reference", "status", "amount", "tenant"]
        read_only_fields = ["tenant"]


class OrderViewSet(TenantFilterMixin, BaseModelViewSet):
    queryset = Order.objects.all()
    serializer_class = OrderSerializer
    page_size = 3
    tenant_field = "tenant_id"

    def get_permissions(self) -> list[Any]:
        if self.action == "destroy":
            return [permissions.IsAdminUser()]
        return super().get_permissions()


class OffsetOrderViewSet(BaseReadOnlyViewSet):
    queryset = Order.objects.all()
    serializer_class = OrderSerializer
    pagination_style = "offset"
    page_size = 2


class LimitedOrderViewSet(RateLimitMixin, CORSMixin, BaseReadOnlyViewSet):
    queryset = Order.objects.all()
    serializer_class = OrderSerializer
    rate_limit = "3/min"
    cors_allowed_origins = ("https://shop.example",)


class PingView(BaseAPIView):
    permission_classes_by_action = {"post": [permissions.IsAdminUser]}

    def get(self, request: Any) -> Response:
        return Response({"pong": True})

    def post(self, request: Any) -> Response:
        return Response({"pong": "admin"})


class TenantOutboxViewSet(OutboxItemViewSet):
    """headrace's outbox endpoint scoped by a payload key, with a small rate (the override points)."""

    tenant_field = "payload__tenant"
    rate_limit = "4/min"
    rate_limit_scope = "demo-outbox"
    page_size = 2


router = DefaultRouter()
router.register("orders", OrderViewSet, basename="order")
router.register("offset-orders", OffsetOrderViewSet, basename="offset-order")
router.register("limited-orders", LimitedOrderViewSet, basename="limited-order")
router.register("tenant-outbox", TenantOutboxViewSet, basename="tenant-outbox")

urlpatterns = [path("", include(router.urls)), path("ping/", PingView.as_view())]
