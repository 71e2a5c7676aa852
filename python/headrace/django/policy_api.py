"""orb-worker's policy API inside Django (``headrace.django.urls``): the routes, status codes and
JSON bodies of ``headrace-orb-worker`` (:func:`headrace.orb.server.handle_request` answers every
orb-worker route here too), writing **durable** policies that running workers pick up, plus read
routes for runs:

* ``GET api/v1/runs?policy=<name>&limit=<n>`` — runs, newest first (every policy without
  ``policy``);
* ``GET api/v1/policies/<name>/runs`` — one policy's runs (404 when it is not stored).

Access: staff users of a Django session; with ``HEADRACE["API_TOKEN"]`` set, also
``Authorization: Bearer <token>``. Anonymous requests get 401, other users 403. The view is
exempt from CSRF: every writing route needs ``Content-Type: application/x-yaml`` or the
``DELETE`` method, which a cross-site form cannot send without a CORS preflight.
"""

from __future__ import annotations

import hmac
import time
from typing import Any, cast

from django.http import HttpRequest, JsonResponse
from django.views.decorators.csrf import csrf_exempt

from headrace.orb.models import Policy
from headrace.orb.server import handle_request
from headrace.orb.service import PolicyExistsError, PolicyNotFoundError

__all__ = ["DjangoOrbWorker", "orb_api", "run_json"]

_STARTED = time.monotonic()


class DjangoOrbWorker:
    """What :func:`handle_request` drives, over the durable policy store: "starting" a policy
    stores it (a worker starts it within seconds), "deleting" removes it."""

    def __init__(self, policies: Any) -> None:
        self.policies = policies

    @property
    def loaded_modules(self) -> set[str]:
        return {str((p.get("config") or {}).get("package")) for p in self.policies.all().values()}

    def start_policy(self, name: str, policy: Policy, written: Any = None) -> None:
        from headrace.runner import NullSink, PolicyManager

        if self.policies.get(name) is not None:
            raise PolicyExistsError(f"policy '{name}' already exists")
        # A policy the runner cannot start (its package does not load) is refused now, with the
        # runner's own message, as orb-worker refuses it (400).
        probe = PolicyManager(state=None, sink=NullSink())
        try:
            probe.start_policies({"policies": {name: policy.model_dump(mode="json")}}, schedule=False)
        finally:
            probe.stop()
        self.policies.save(name, written if written is not None else policy.model_dump(mode="json"))

    def delete_policy(self, name: str) -> None:
        if not self.policies.delete(name):
            raise PolicyNotFoundError(f"policy '{name}' not found")

    def uptime_seconds(self) -> int:
        return round(time.monotonic() - _STARTED)


def run_json(run: Any) -> dict[str, Any]:
    """A run as JSON (the fields of ``headrace.runner.Run``)."""
    return {
        "id": run.id,
        "policy_id": run.policy_id,
        "status": str(run.status),
        "reason": run.reason,
        "entity_count": run.entity_count,
        "metadata": run.metadata,
        "source": str(run.source),
        "created_at": run.created_at.isoformat(),
        "updated_at": run.updated_at.isoformat(),
    }


def _denied(request: HttpRequest) -> JsonResponse | None:
    from headrace.django.conf import get_settings

    token = get_settings().API_TOKEN
    header = request.headers.get("Authorization", "")
    if token and header.startswith("Bearer "):
        if hmac.compare_digest(header[len("Bearer ") :].encode(), token.encode()):
            return None
        return JsonResponse({"detail": "Invalid token."}, status=401)
    user = getattr(request, "user", None)
    if user is None or not user.is_authenticated:
        response = JsonResponse({"detail": "Authentication credentials were not provided."}, status=401)
        if token:
            response["WWW-Authenticate"] = 'Bearer realm="headrace"'
        return response
    if not (user.is_active and user.is_staff):
        return JsonResponse({"detail": "You do not have permission to perform this action."}, status=403)
    return None


def _runs(policies: Any, route: str, request: HttpRequest) -> JsonResponse | None:
    """The read routes this API adds; ``None`` for every other route."""
    parts = route.strip("/").split("/")
    if parts == ["runs"]:
        if request.method != "GET":
            return JsonResponse({"detail": "Method Not Allowed"}, status=405)
        try:
            limit = max(1, min(int(request.GET.get("limit", "20")), 100))
        except ValueError:
            return JsonResponse({"detail": "limit must be a whole number"}, status=400)
        name = request.GET.get("policy")
        names = [name] if name else sorted(policies.all())
        runs = [run_json(r) for n in names for r in policies.runs(n, limit)]
        return JsonResponse({"runs": runs})
    if len(parts) == 3 and parts[0] == "policies" and parts[2] == "runs":
        if request.method != "GET":
            return JsonResponse({"detail": "Method Not Allowed"}, status=405)
        if policies.get(parts[1]) is None:
            return JsonResponse({"detail": f"policy '{parts[1]}' not found"}, status=404)
        return JsonResponse({"runs": [run_json(r) for r in policies.runs(parts[1], 100)]})
    return None


@csrf_exempt
def orb_api(request: HttpRequest, route: str) -> JsonResponse:
    from headrace.django.policies import open_policies

    denied = _denied(request)
    if denied is not None:
        return denied
    policies = open_policies()
    try:
        answered = _runs(policies, route, request)
        if answered is not None:
            return answered
        status, body = handle_request(
            cast(Any, DjangoOrbWorker(policies)),  # handle_request drives OrbWorker's interface
            request.method or "GET",
            "/api/v1/" + route,
            request.META.get("CONTENT_TYPE") or None,
            request.body,
        )
    finally:
        policies.state.close()
    return JsonResponse(body, status=status, safe=False)
