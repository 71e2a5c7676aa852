"""The health view: ``GET /headrace/health/`` answers 200 (healthy) or 503 with a JSON report,
for load balancers and Kubernetes probes.

Healthy means: the outbox database answers, every headrace migration is applied, a worker
heartbeat is younger than ``HEADRACE["HEARTBEAT_MAX_AGE"]`` (unless
``HEADRACE["HEALTH_REQUIRE_WORKER"]`` is false) and the oldest due pending item has waited less
than ``HEADRACE["MAX_PENDING_AGE"]`` (when set). The checks are :func:`headrace.django.health.
check_health`'s, the same as ``manage.py headrace_healthcheck``.
"""

from __future__ import annotations

import logging
from typing import Any

from django.http import HttpRequest, JsonResponse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_safe

__all__ = ["health"]

log = logging.getLogger("headrace.django.health")


@never_cache
@require_safe
def health(request: HttpRequest) -> JsonResponse:
    from headrace.django.conf import get_settings
    from headrace.django.health import check_health

    settings = get_settings()
    try:
        report = check_health(
            max_pending_age=settings.MAX_PENDING_AGE,
            require_worker=settings.HEALTH_REQUIRE_WORKER,
        )
    except Exception as exc:  # a probe gets JSON and 503, never an HTML error page
        log.exception("health check failed")
        body: dict[str, Any] = {"ok": False, "problems": [f"the health check failed: {exc}"]}
        return JsonResponse(body, status=503)
    return JsonResponse(report.as_dict(), status=200 if report.ok else 503)
