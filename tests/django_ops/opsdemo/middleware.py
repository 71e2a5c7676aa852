"""Sets ``request.tenant_id`` from the ``X-Tenant`` header (how the tests pick a tenant)."""

from collections.abc import Callable

from django.http import HttpRequest, HttpResponse


class TenantHeaderMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        tenant = request.headers.get("X-Tenant")
        if tenant:
            request.tenant_id = int(tenant)  # type: ignore[attr-defined]
        return self.get_response(request)
