"""The seed's REST base classes on Django REST framework (``pip install headrace[drf]``).

::

    from headrace.django.drf_base import BaseViewSet, TenantFilterMixin

    class OrderViewSet(TenantFilterMixin, BaseModelViewSet):
        queryset = Order.objects.all()
        serializer_class = OrderSerializer
        tenant_field = "organization_id"

        def get_permissions(self):
            if self.action == "destroy":
                return [IsAdminUser()]
            return super().get_permissions()

Defaults: authenticated users only, cursor pagination (newest first), DRF's configured
authentication. ``permission_classes_by_action`` and ``throttle_classes_by_action`` give
per-action classes without overriding anything.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from django.core.exceptions import ImproperlyConfigured
from django.db.models import QuerySet
from rest_framework import pagination, permissions, throttling, viewsets
from rest_framework.exceptions import PermissionDenied
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from headrace.django.tenancy import resolve_request_tenant

__all__ = [
    "BaseAPIView",
    "BaseModelViewSet",
    "BaseReadOnlyViewSet",
    "BaseViewSet",
    "CORSMixin",
    "PaginationMixin",
    "RateLimitMixin",
    "TenantFilterMixin",
]

if TYPE_CHECKING:
    _ViewBase = APIView
    _GenericBase = viewsets.GenericViewSet[Any]
    _GenericViewSet = viewsets.GenericViewSet[Any]
    _ModelViewSet = viewsets.ModelViewSet[Any]
    _ReadOnlyModelViewSet = viewsets.ReadOnlyModelViewSet[Any]
else:
    _ViewBase = object
    _GenericBase = object
    _GenericViewSet = viewsets.GenericViewSet
    _ModelViewSet = viewsets.ModelViewSet
    _ReadOnlyModelViewSet = viewsets.ReadOnlyModelViewSet


class _ActionClassesMixin(_ViewBase):
    """``permission_classes_by_action`` / ``throttle_classes_by_action`` (action name → classes)."""

    permission_classes: Sequence[Any] = (permissions.IsAuthenticated,)
    permission_classes_by_action: dict[str, Sequence[Any]] = {}
    throttle_classes_by_action: dict[str, Sequence[Any]] = {}

    def _current_action(self) -> str:
        action = getattr(self, "action", None)
        if action:
            return str(action)
        request = getattr(self, "request", None)
        return (request.method or "").lower() if request is not None else ""

    def get_permissions(self) -> list[Any]:
        classes = self.permission_classes_by_action.get(self._current_action())
        if classes is None:
            return list(super().get_permissions())
        return [cls() for cls in classes]

    def get_throttles(self) -> list[Any]:
        classes = self.throttle_classes_by_action.get(self._current_action())
        if classes is None:
            return list(super().get_throttles())
        return [cls() for cls in classes]


_RATE = re.compile(r"^\s*(\d+)\s*/\s*(s|sec|second|m|min|minute|h|hour|d|day)\s*$")


class RateLimitMixin(_ViewBase):
    """Limits each client to ``rate_limit`` requests (DRF rate syntax: ``"100/min"``, ``"5/s"``).

    Clients are users when authenticated, else IP addresses; ``rate_limit_scope`` (default: the
    view's class name) keeps views' budgets apart. Refused requests get 429 with ``Retry-After``.
    The counters live in Django's default cache, like DRF's own throttles.
    """

    rate_limit: str | None = None
    rate_limit_scope: str | None = None

    def get_rate_limit_throttle(self) -> throttling.BaseThrottle | None:
        if self.rate_limit is None:
            return None
        if not _RATE.match(self.rate_limit):
            raise ImproperlyConfigured(
                f"{type(self).__name__}.rate_limit = {self.rate_limit!r}: "
                "use '<count>/<s|min|hour|day>', e.g. '100/min'"
            )
        rate = self.rate_limit.replace(" ", "")
        scope_name = self.rate_limit_scope or type(self).__name__

        class ViewRateThrottle(throttling.SimpleRateThrottle):
            scope = scope_name

            def get_rate(self) -> str:
                return rate

            def get_cache_key(self, request: Request, view: Any) -> str:
                user = getattr(request, "user", None)
                ident = f"user-{user.pk}" if user is not None and user.is_authenticated else self.get_ident(request)
                return self.cache_format % {"scope": self.scope, "ident": ident}

        return ViewRateThrottle()

    def get_throttles(self) -> list[Any]:
        throttles = list(super().get_throttles())
        own = self.get_rate_limit_throttle()
        return [*throttles, own] if own is not None else throttles


class CORSMixin(_ViewBase):
    """CORS headers for the origins in ``cors_allowed_origins`` (``"*"`` allows any origin).

    Preflight ``OPTIONS`` requests are answered with the allowed methods and headers; a request
    from an origin not listed gets no CORS headers, so the browser blocks it.
    """

    cors_allowed_origins: Sequence[str] = ()
    cors_allow_credentials = False
    cors_allowed_headers: Sequence[str] = ("authorization", "content-type", "x-csrftoken", "x-requested-with")
    cors_max_age = 600

    def cors_origin_allowed(self, origin: str) -> bool:
        return "*" in self.cors_allowed_origins or origin in self.cors_allowed_origins

    def finalize_response(self, request: Request, response: Response, *args: Any, **kwargs: Any) -> Any:
        response = super().finalize_response(request, response, *args, **kwargs)
        origin = request.META.get("HTTP_ORIGIN")
        if not origin or not self.cors_origin_allowed(origin):
            return response
        wildcard = "*" in self.cors_allowed_origins and not self.cors_allow_credentials
        response["Access-Control-Allow-Origin"] = "*" if wildcard else origin
        if not wildcard:
            response["Vary"] = ", ".join(v for v in (response.get("Vary"), "Origin") if v)
        if self.cors_allow_credentials:
            response["Access-Control-Allow-Credentials"] = "true"
        if request.method == "OPTIONS":
            response["Access-Control-Allow-Methods"] = ", ".join(self.allowed_methods)
            response["Access-Control-Allow-Headers"] = ", ".join(self.cors_allowed_headers)
            response["Access-Control-Max-Age"] = str(self.cors_max_age)
        return response


class TenantFilterMixin(_GenericBase):
    """Limits the queryset to the request's tenant and stamps it on created rows.

    ``tenant_field`` (default ``tenant_id``) names the column; the tenant comes from
    :func:`headrace.django.tenancy.resolve_request_tenant`. Without a tenant a request sees nothing
    and may create nothing (403). Staff see every tenant when ``tenant_staff_sees_all`` is true.
    """

    tenant_field = "tenant_id"
    tenant_staff_sees_all = False

    def get_request_tenant(self) -> Any:
        return resolve_request_tenant(self.request)

    def _unscoped(self) -> bool:
        return bool(self.tenant_staff_sees_all and getattr(self.request.user, "is_staff", False))

    def get_queryset(self) -> QuerySet[Any]:
        queryset: QuerySet[Any] = super().get_queryset()
        if self._unscoped():
            return queryset
        tenant = self.get_request_tenant()
        if tenant is None:
            return queryset.none()
        return queryset.filter(**{self.tenant_field: tenant})

    def perform_create(self, serializer: Any) -> None:
        tenant = self.get_request_tenant()
        if tenant is None:
            if not self._unscoped():
                raise PermissionDenied("This request acts for no tenant, so it cannot create tenant-scoped rows.")
            serializer.save()
            return
        serializer.save(**{self.tenant_field: tenant})


class PaginationMixin(_GenericBase):
    """Cursor pagination (stable under inserts) by default; ``pagination_style = "offset"`` for
    limit/offset. ``page_size``, ``max_page_size`` (clients may ask ``?page_size=``) and
    ``pagination_ordering`` (default ``"-pk"``, must be unique for cursors) tune it."""

    pagination_style = "cursor"
    page_size = 50
    max_page_size = 500
    pagination_ordering: str | Sequence[str] = "-pk"

    @property
    def pagination_class(self) -> type[pagination.BasePagination]:  # type: ignore[override]
        size, largest, ordering = self.page_size, self.max_page_size, self.pagination_ordering
        if self.pagination_style == "cursor":

            class Cursor(pagination.CursorPagination):
                page_size = size
                max_page_size = largest
                page_size_query_param = "page_size"

            Cursor.ordering = ordering if isinstance(ordering, str) else tuple(ordering)
            return Cursor
        if self.pagination_style == "offset":

            class Offset(pagination.LimitOffsetPagination):
                default_limit = size
                max_limit = largest

            return Offset
        raise ImproperlyConfigured(
            f"{type(self).__name__}.pagination_style = {self.pagination_style!r}: use 'cursor' or 'offset'"
        )


class BaseAPIView(_ActionClassesMixin, APIView):
    """Single-endpoint view: authenticated users only; per-method permissions and throttles via
    ``permission_classes_by_action`` keyed by the lower-case HTTP method."""

    permission_classes: Sequence[Any] = (permissions.IsAuthenticated,)


class BaseViewSet(_ActionClassesMixin, PaginationMixin, _GenericViewSet):
    """A viewset for your own actions, with the defaults above."""

    permission_classes: Sequence[Any] = (permissions.IsAuthenticated,)


class BaseModelViewSet(_ActionClassesMixin, PaginationMixin, _ModelViewSet):
    """Full CRUD with the defaults above."""

    permission_classes: Sequence[Any] = (permissions.IsAuthenticated,)


class BaseReadOnlyViewSet(_ActionClassesMixin, PaginationMixin, _ReadOnlyModelViewSet):
    """List and retrieve with the defaults above."""

    permission_classes: Sequence[Any] = (permissions.IsAuthenticated,)


def ok(data: Any, status: int = 200) -> Response:
    """A JSON response (shorthand for views built on these classes)."""
    return Response(data, status=status)
