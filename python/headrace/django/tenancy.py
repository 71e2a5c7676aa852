"""Which tenant a request acts for: one rule shared by the admin and the REST base classes.

The tenant id is looked up, in order, on ``request.tenant_id``, ``request.tenant`` (its ``pk``),
``request.user.tenant_id`` and ``request.user.tenant`` (its ``pk``). Set any one of them in your
middleware or user model. ``None`` means the request acts for no tenant.
"""

from __future__ import annotations

from typing import Any

__all__ = ["resolve_request_tenant"]


def _tenant_of(holder: Any) -> Any:
    tenant_id = getattr(holder, "tenant_id", None)
    if tenant_id is not None:
        return tenant_id
    tenant = getattr(holder, "tenant", None)
    if tenant is None:
        return None
    return getattr(tenant, "pk", tenant)


def resolve_request_tenant(request: Any) -> Any:
    """The tenant id ``request`` acts for, or None."""
    tenant_id = _tenant_of(request)
    if tenant_id is not None:
        return tenant_id
    user = getattr(request, "user", None)
    if user is None or not getattr(user, "is_authenticated", False):
        return None
    return _tenant_of(user)
