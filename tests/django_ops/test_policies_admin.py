"""The durable policies' admin (YAML and form, the runner's validation, enable/disable, delete,
runs, run now) and a running worker following the store without a restart."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from conftest import staff_client
from django.test import Client

from headrace.django.policies import RUN_NOW_TOPIC, DjangoPolicies, PolicySync, open_policies

URL = "/admin/headrace/policy/"
DOC = "config:\n  package: opsdemo.backends\n  schedule: '0 3 * * *'\nscope:\n  count: 2\n"
ALL = (
    "headrace.view_policy",
    "headrace.add_policy",
    "headrace.change_policy",
    "headrace.delete_policy",
    "headrace.run_now_policy",
)


@pytest.fixture
def store(committed: Any) -> Iterator[DjangoPolicies]:
    policies = open_policies()
    yield policies
    policies.state.close()


@pytest.fixture
def operator(committed: Any) -> Client:
    return staff_client("policy-operator", *ALL)


def _create(client: Client, name: str = "p1", document: str = DOC, enabled: bool = True) -> Any:
    data = {"name": name, "mode": "yaml", "document": document}
    if enabled:
        data["enabled"] = "on"
    return client.post(URL + "add/", data)


def test_create_as_yaml_then_list(operator: Client, store: DjangoPolicies) -> None:
    response = _create(operator)
    assert response.status_code == 302, response.content.decode()[:2000]
    assert store.get("p1") == {
        "config": {"package": "opsdemo.backends", "schedule": "0 3 * * *"},
        "scope": {"count": 2},
    }
    page = operator.get(URL)
    assert page.status_code == 200
    html = page.content.decode()
    assert 'data-policy="p1"' in html and "opsdemo.backends" in html and "0 3 * * *" in html


def test_create_as_a_form(operator: Client, store: DjangoPolicies) -> None:
    response = operator.post(
        URL + "add/",
        {
            "name": "formed",
            "mode": "form",
            "package": "opsdemo.backends",
            "schedule": "*/5 * * * *",
            "config": "timezone: UTC\n",
            "scope": "count: 1\nlabel: x\n",
            "enabled": "on",
        },
    )
    assert response.status_code == 302
    assert store.get("formed") == {
        "config": {"timezone": "UTC", "package": "opsdemo.backends", "schedule": "*/5 * * * *"},
        "scope": {"count": 1, "label": "x"},
    }


def test_the_runners_validation_refuses_bad_policies(operator: Client, store: DjangoPolicies) -> None:
    bad = _create(operator, document=DOC.replace("0 3 * * *", "every day"))
    assert bad.status_code == 200
    assert "config.schedule" in bad.content.decode() and "Invalid cron schedule format" in bad.content.decode()
    missing_scope = _create(operator, document="config:\n  package: opsdemo.backends\n")
    assert "scope" in missing_scope.content.decode() and missing_scope.status_code == 200
    not_yaml = _create(operator, document="config: [unclosed")
    assert "Invalid YAML" in not_yaml.content.decode()
    form = operator.post(URL + "add/", {"name": "f", "mode": "form", "package": "x", "schedule": "61 * * * *"})
    assert form.status_code == 200 and "Invalid cron schedule format" in form.content.decode()
    assert store.all() == {}


def test_edit_enable_disable_delete(operator: Client, store: DjangoPolicies) -> None:
    _create(operator)
    page = operator.get(URL + "p1/change/")
    assert page.status_code == 200 and "count: 2" in page.content.decode()
    edited = operator.post(URL + "p1/change/", {"name": "ignored", "mode": "yaml", "document": DOC.replace("2", "5")})
    assert edited.status_code == 302
    assert store.get("p1")["scope"] == {"count": 5}  # type: ignore[index]
    assert store.get("ignored") is None
    assert "p1" in store.disabled()  # saved without "enabled"
    assert operator.post(URL + "p1/enable/").status_code == 302
    assert store.disabled() == set()
    assert operator.post(URL + "p1/disable/").status_code == 302
    assert store.disabled() == {"p1"}
    assert operator.get(URL + "p1/enable/").status_code == 405
    assert operator.get(URL + "p1/delete/").status_code == 200
    assert operator.post(URL + "p1/delete/").status_code == 302
    assert store.get("p1") is None and store.disabled() == set()
    assert operator.get(URL + "p1/change/").status_code == 404


def test_every_change_is_written_to_the_admin_log(operator: Client, store: DjangoPolicies) -> None:
    from django.contrib.admin.models import ADDITION, CHANGE, DELETION, LogEntry

    from headrace.django.models import Policy

    _create(operator)
    operator.post(URL + "p1/change/", {"mode": "yaml", "document": DOC.replace("2", "5")})
    operator.post(URL + "p1/enable/")
    operator.post(URL + "p1/run-now/")
    operator.post(URL + "p1/delete/")
    entries = LogEntry.objects.filter(object_id="p1").order_by("pk")
    assert {e.content_type.model_class() for e in entries} == {Policy}
    assert {e.user.get_username() for e in entries} == {"policy-operator"}
    logged = [(e.action_flag, e.get_change_message()) for e in entries]
    assert logged[:3] == [
        (ADDITION, "Policy created (enabled) from the admin."),
        (CHANGE, "Policy saved (disabled) from the admin."),
        (CHANGE, "Policy enabled from the admin."),
    ]
    assert logged[3][0] == CHANGE and logged[3][1].startswith("Run requested from the admin (outbox item #")
    assert logged[4:] == [(DELETION, "Policy deleted from the admin.")]


def test_run_now_enqueues_a_run_request_and_runs_are_listed(operator: Client, store: DjangoPolicies) -> None:
    from headrace.django.testing import assert_enqueued

    _create(operator)
    response = operator.post(URL + "p1/run-now/", follow=True)
    assert response.status_code == 200
    assert_enqueued(RUN_NOW_TOPIC, {"policy": "p1"}, count=1)
    assert "No run recorded yet" in response.content.decode()


def test_permissions(store: DjangoPolicies) -> None:
    admin_client = staff_client("full", *ALL)
    _create(admin_client)
    viewer = staff_client("viewer-p", "headrace.view_policy")
    assert viewer.get(URL).status_code == 200
    assert viewer.get(URL + "p1/runs/").status_code == 200
    html = viewer.get(URL).content.decode()
    assert "headrace-run-now" not in html and "headrace-toggle" not in html and "Add policy" not in html
    assert viewer.get(URL + "add/").status_code == 403
    assert viewer.get(URL + "p1/change/").status_code == 403
    assert viewer.post(URL + "p1/disable/").status_code == 403
    assert viewer.post(URL + "p1/delete/").status_code == 403
    assert viewer.post(URL + "p1/run-now/").status_code == 403
    assert staff_client("nobody").get(URL).status_code == 403
    assert store.disabled() == set() and store.get("p1") is not None


def test_sync_follows_the_store(store: DjangoPolicies) -> None:
    from headrace.runner import NullSink, PolicyManager

    manager = PolicyManager(state=store.state, sink=NullSink())
    try:
        sync = PolicySync(manager, store)
        store.save("a", {"config": {"package": "opsdemo.backends", "schedule": "0 3 * * *"}, "scope": {"count": 1}})
        assert sync.sync() == ["started a"]
        assert manager.policies == ["a"]
        assert sync.sync() == []
        store.save("a", {"config": {"package": "opsdemo.backends", "schedule": "0 4 * * *"}, "scope": {"count": 1}})
        assert sync.sync() == ["restarted a"]
        assert manager.policy("a").config.schedule == "0 4 * * *"
        store.set_enabled("a", False)
        assert sync.sync() == ["stopped a"] and manager.policies == []
        store.set_enabled("a", True)
        assert sync.sync() == ["started a"]
        store.delete("a")
        assert sync.sync() == ["stopped a"] and manager.policies == []
    finally:
        manager.stop()


def test_a_running_worker_picks_up_an_admin_edit(operator: Client, store: DjangoPolicies) -> None:
    from headrace.django.worker import DjangoWorker, WorkerOptions

    worker = DjangoWorker(WorkerOptions(worker_id="ops-worker", bridges=False))
    worker._start_background()
    runner = threading.Thread(target=worker.worker.run, daemon=True)
    runner.start()
    try:
        assert _create(operator).status_code == 302
        _wait(lambda: "p1" in worker.manager.policies, "the worker to start p1")
        operator.post(URL + "p1/change/", {"mode": "yaml", "document": DOC.replace("0 3", "0 5"), "enabled": "on"})
        _wait(lambda: _schedule(worker.manager, "p1") == "0 5 * * *", "the worker to apply the edit")
        operator.post(URL + "p1/run-now/")
        # The run is recorded "running" before its entities move: wait for it to finish.
        _wait(lambda: [str(r.status) for r in store.runs("p1", 5)] == ["completed"], "the worker to run p1 now")
        run = store.runs("p1", 5)[0]
        assert (str(run.source), run.entity_count) == ("manual", 2)
        operator.post(URL + "p1/disable/")
        _wait(lambda: "p1" not in worker.manager.policies, "the worker to stop p1")
    finally:
        worker.stop()
        runner.join(timeout=30)
        worker.close()


def _schedule(manager: Any, name: str) -> str | None:
    """The schedule ``manager`` runs ``name`` on (None while the policy is being restarted)."""
    from headrace.errors import NotFoundError

    try:
        return str(manager.policy(name).config.schedule)
    except NotFoundError:
        return None


def _wait(condition: Any, what: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")
