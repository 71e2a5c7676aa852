"""The admin pages over the state backend: an outbox item's attempts as the worker recorded them,
workers with their heartbeat and leases, invocations with their history, workflow runs."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
from conftest import _claim, staff_client
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext

from headrace.django import db, enqueue


@pytest.fixture
def state(committed: Any) -> Any:
    backend = db.open_state()
    yield backend
    backend.close()


def test_an_items_page_shows_its_attempts_from_the_state_backend(state: Any) -> None:
    from headrace.worker import OutboxWorker

    def boom(item: Any) -> None:
        raise RuntimeError("the upstream refused")

    item_id = enqueue("attempts.t", {"n": 1}, max_attempts=3)
    store = db.open_store()
    try:
        OutboxWorker(store, {"attempts.t": boom}, worker_id="w-attempts", state=state).run_until_empty()
    finally:
        store.close()
    state.wait_for_all_async_operations()
    client = staff_client("att-viewer", "headrace.view_outboxitem")
    html = client.get(f"/admin/headrace/outboxitem/{item_id}/change/").content.decode()
    assert '<table class="headrace-attempts">' in html
    row = html[html.index("<tbody>", html.index("headrace-attempts")) :].split("</tr>")[0]
    assert "<td>1</td>" in row and "running" in row and "retry" in row and "w-attempts" in row
    assert "the upstream refused" in row


def _beat(state: Any, worker: str, age: float) -> None:
    from headrace.state import AppInfo

    moment = datetime.now(timezone.utc) - timedelta(seconds=age)
    state.store_app_info(
        AppInfo(
            app_id=f"headrace.worker:{worker}", module="headrace.django", metadata={"heartbeat": moment.isoformat()}
        )
    )
    state.wait_for_all_async_operations()


def test_workers_page_shows_heartbeats_and_leases(state: Any) -> None:
    _beat(state, "w-live", 2)
    _beat(state, "w-old", 3600)
    for n in range(3):
        enqueue("lease.t", {"n": n})
    _claim("lease.t", "w-live")
    client = staff_client("w-viewer", "headrace.view_worker")
    response = client.get("/admin/headrace/worker/")
    assert response.status_code == 200
    rows = {admin_row.app_id: admin_row for admin_row in response.context["cl"].result_list}
    assert set(rows) == {"headrace.worker:w-live", "headrace.worker:w-old"}
    assert rows["headrace.worker:w-live"].lease_count == 3
    assert rows["headrace.worker:w-old"].lease_count == 0
    html = response.content.decode()
    assert "w-live" in html and 'alt="True"' in html and 'alt="False"' in html
    with CaptureQueriesContext(connection) as ctx:
        client.get("/admin/headrace/worker/")
    for n in range(5):
        _beat(state, f"w-more-{n}", 1)
    with CaptureQueriesContext(connection) as more:
        client.get("/admin/headrace/worker/")
    assert len(ctx.captured_queries) == len(more.captured_queries)


def test_invocations_and_workflow_runs(state: Any) -> None:
    from headrace.state import Invocation, InvocationStatus, WorkflowIdentity

    flow = WorkflowIdentity("wf-1", "shop.checkout")
    state.store_workflow_run(flow)
    invocation = Invocation("shop.charge", {"order": 7}, invocation_id="inv-charge", workflow=flow)
    state.upsert_invocation(invocation)
    state.add_history(invocation, InvocationStatus.PENDING, {"worker_id": "w-9"})
    state.add_history(invocation, InvocationStatus.RUNNING)
    state.wait_for_all_async_operations()
    client = staff_client("s-viewer", "headrace.view_invocation", "headrace.view_workflowrun")
    listing = client.get("/admin/headrace/invocation/?q=task:shop.")
    assert [i.invocation_id for i in listing.context["cl"].result_list] == ["inv-charge"]
    seq = listing.context["cl"].result_list[0].pk
    page = client.get(f"/admin/headrace/invocation/{seq}/change/").content.decode()
    assert '<table class="headrace-history">' in page
    history = page[page.index("headrace-history") :]
    assert history.index("pending") < history.index("running") and "w-9" in history
    assert "&quot;order&quot;: 7" in page
    runs = client.get("/admin/headrace/workflowrun/")
    assert [r.workflow_id for r in runs.context["cl"].result_list] == ["wf-1"]
    run_page = client.get(f"/admin/headrace/workflowrun/{runs.context['cl'].result_list[0].pk}/change/")
    assert "inv-charge" in run_page.content.decode()


@pytest.mark.django_db
def test_state_pages_need_their_view_permission() -> None:
    client: Client = staff_client("no-perms")
    for page in ("worker", "invocation", "workflowrun", "outboxitem", "policy"):
        assert client.get(f"/admin/headrace/{page}/").status_code == 403, page
    admin_index = staff_client("idx", "headrace.view_worker").get("/admin/").content.decode()
    assert "/admin/headrace/worker/" in admin_index and "/admin/headrace/invocation/" not in admin_index


def test_bridges_page_and_run_now(committed: Any) -> None:
    from types import SimpleNamespace

    from opsdemo.bridges import CountingBridge

    from headrace.integrations import run_due_bridges

    bridge = CountingBridge(SimpleNamespace(pk=1))
    store = db.open_store()
    try:
        assert [r.ok for r in run_due_bridges([bridge], store=store)] == [True]
        viewer = staff_client("b-viewer", "headrace.view_bridge")
        response = viewer.get("/admin/headrace/bridge/")
        rows = list(response.context["cl"].result_list)
        assert [r.dedupe_key for r in rows] == [f"bridge:{bridge.bridge_key}"]
        admin_obj = response.context["cl"].model_admin
        assert admin_obj.runs(rows[0]) == 1 and admin_obj.last_run(rows[0]) is not None
        next_sync = admin_obj.next_sync(rows[0])
        assert next_sync is not None and (next_sync - datetime.now(timezone.utc)).total_seconds() > 3000
        assert "run_now" not in admin_obj.get_actions(response.wsgi_request)
        assert run_due_bridges([bridge], store=store) == []  # not due
        operator = staff_client("b-operator", "headrace.view_bridge", "headrace.run_now_bridge")
        done = operator.post("/admin/headrace/bridge/", {"action": "run_now", "_selected_action": [rows[0].pk]})
        assert done.status_code == 302
        from django.contrib.admin.models import LogEntry

        [entry] = LogEntry.objects.filter(object_id=str(rows[0].pk), user__username="b-operator")
        assert entry.get_change_message() == "Made due now from the admin."
        assert [r.ok for r in run_due_bridges([bridge], store=store)] == [True]
        assert operator.get("/admin/headrace/bridge/").context["cl"].result_list[0].attempts == 2
    finally:
        store.close()
