"""orb-worker's policy API inside Django: the same status codes and bodies as
``headrace-orb-worker`` (each request is also answered by the drop-in's own ``handle_request``
over an in-memory ``OrbWorker`` and compared), durable writes, run routes, and access rules."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from conftest import staff_client
from django.contrib.auth.models import User
from django.test import Client, override_settings

from headrace.django.policies import open_policies

BASE = "/headrace/api/v1/"
YAML = "application/x-yaml"
GOOD = """
policies:
  p1:
    config:
      package: opsdemo.backends
      schedule: "0 3 * * *"
    scope:
      count: 2
"""
BAD_SCHEDULE = """
policies:
  p2:
    config:
      package: opsdemo.backends
      schedule: "every tuesday"
    scope: {}
"""
UNLOADABLE = """
policies:
  p3:
    config:
      package: opsdemo.no_such_module
    scope: {}
"""


@pytest.fixture
def staff(committed: Any) -> Client:
    return staff_client("operator")


@pytest.fixture
def reference() -> Iterator[Any]:
    """headrace-orb-worker's own request handling, in memory."""
    from headrace.orb.server import handle_request
    from headrace.orb.service import OrbWorker
    from headrace.runner import NullSink

    worker = OrbWorker(sink=NullSink())

    def answer(method: str, route: str, body: str = "", content_type: str | None = YAML) -> tuple[int, Any]:
        return handle_request(worker, method, "/api/v1/" + route, content_type, body.encode())

    yield answer
    worker.stop()


def _call(client: Client, method: str, route: str, body: str = "", content_type: str = YAML) -> tuple[int, Any]:
    response = getattr(client, method.lower())(BASE + route, data=body, content_type=content_type)
    assert response["Content-Type"] == "application/json"
    return response.status_code, response.json()


def test_same_codes_and_bodies_as_the_orb_worker(staff: Client, reference: Any) -> None:
    exchanges = [
        ("POST", "policies", GOOD, YAML),
        ("GET", "capabilities", "", YAML),
        ("POST", "policies", GOOD, YAML),  # 409: exists
        ("POST", "policies", BAD_SCHEDULE, YAML),  # 403: validation errors
        ("POST", "policies", "policies: [unclosed", YAML),  # 400: invalid YAML
        ("POST", "policies", GOOD, "application/json"),  # 400: content type
        ("POST", "policies", "policies: {}\n", YAML),  # 400: no policies
        ("POST", "policies", UNLOADABLE, YAML),  # 400: the package does not load
        ("GET", "policies", "", YAML),  # 405
        ("DELETE", "policies/p1", "", YAML),  # 200
        ("DELETE", "policies/p1", "", YAML),  # 404
        ("PUT", "policies/p1", "", YAML),  # 405
        ("GET", "nowhere", "", YAML),  # 404
    ]
    seen = []
    for method, route, body, content_type in exchanges:
        ours = _call(staff, method, route, body, content_type)
        theirs = reference(method, route, body, content_type)
        seen.append(ours[0])
        assert ours == theirs, (method, route, ours, theirs)
    assert seen == [201, 200, 409, 403, 400, 400, 400, 400, 405, 200, 404, 405, 404]
    status, body = _call(staff, "GET", "status")
    assert status == 200 and set(body) == {"version", "up_time_seconds"}


def test_posted_policies_are_durable_as_written(staff: Client, monkeypatch: Any) -> None:
    monkeypatch.setenv("OPS_COUNT", "3")
    document = GOOD.replace("count: 2", "count: ${OPS_COUNT}")
    assert _call(staff, "POST", "policies", document)[0] == 201
    policies = open_policies()
    try:
        stored = policies.get("p1")
    finally:
        policies.state.close()
    assert stored == {
        "config": {"package": "opsdemo.backends", "schedule": "0 3 * * *"},
        "scope": {"count": "${OPS_COUNT}"},
    }
    assert _call(staff, "GET", "capabilities") == (200, {"loaded_modules": ["opsdemo.backends"]})


def test_run_routes(staff: Client) -> None:
    from headrace.runner import NullSink, PolicyManager

    assert _call(staff, "POST", "policies", GOOD)[0] == 201
    assert _call(staff, "GET", "policies/p1/runs") == (200, {"runs": []})
    policies = open_policies()
    manager = PolicyManager(state=policies.state, sink=NullSink())
    try:
        manager.start_policies({"policies": {"p1": policies.get("p1")}}, schedule=False)
        run = manager.run_now("p1")
    finally:
        manager.stop()
        policies.state.close()
    status, body = _call(staff, "GET", "policies/p1/runs")
    assert status == 200
    assert [(r["id"], r["status"], r["entity_count"], r["source"]) for r in body["runs"]] == [
        (run.id, "completed", 2, "manual")
    ]
    assert _call(staff, "GET", "runs?policy=p1")[1]["runs"][0]["id"] == run.id
    assert _call(staff, "GET", "runs")[1]["runs"][0]["policy_id"] == "p1"
    assert _call(staff, "GET", "policies/ghost/runs") == (404, {"detail": "policy 'ghost' not found"})
    assert _call(staff, "POST", "runs")[0] == 405
    assert _call(staff, "GET", "runs?limit=x")[0] == 400


def test_staff_only(committed: Any) -> None:
    assert _call(Client(), "GET", "status") == (401, {"detail": "Authentication credentials were not provided."})
    User.objects.create_user("plain", password="pw")
    client = Client()
    client.login(username="plain", password="pw")
    assert _call(client, "GET", "status")[0] == 403
    assert _call(client, "POST", "policies", GOOD)[0] == 403
    policies = open_policies()
    try:
        assert policies.all() == {}
    finally:
        policies.state.close()


def test_optional_token(committed: Any, settings: Any) -> None:
    with override_settings(HEADRACE={**settings.HEADRACE, "API_TOKEN": "s3cret"}):
        good = Client(HTTP_AUTHORIZATION="Bearer s3cret")
        assert _call(good, "POST", "policies", GOOD)[0] == 201
        assert _call(Client(HTTP_AUTHORIZATION="Bearer wrong"), "GET", "status")[0] == 401
        anonymous = Client().get(BASE + "status")
        assert anonymous.status_code == 401 and anonymous["WWW-Authenticate"].startswith("Bearer")
    # Without the setting, a token is not accepted.
    assert _call(Client(HTTP_AUTHORIZATION="Bearer s3cret"), "GET", "status")[0] == 401
