"""The outbox admin on the real schema: filters, search, the health header, payloads, actions
behind their permissions (through the core's statements), and a page's query count."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from conftest import Items, staff_client
from django.contrib.auth.models import User
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from headrace.django import enqueue
from headrace.django.models import OutboxItem

URL = "/admin/headrace/outboxitem/"
ACTION_PERMS = {
    "requeue": "headrace.requeue_outboxitem",
    "run_now": "headrace.run_now_outboxitem",
    "mark_failed": "headrace.fail_outboxitem",
    "purge": "headrace.purge_outboxitem",
}


def _ids(client: Client, query: str = "") -> list[int]:
    response = client.get(URL + query)
    assert response.status_code == 200, response.content[:500]
    return sorted(obj.pk for obj in response.context["cl"].result_list)


def _status(pk: int) -> tuple[str, int]:
    item = OutboxItem.objects.get(pk=pk)
    return item.status, item.attempts


@pytest.mark.parametrize(
    ("state", "field"),
    [
        ("ready", "ready"),
        ("scheduled", "scheduled"),
        ("retrying", "retrying"),
        ("in_flight", "in_flight"),
        ("stalled", "stalled"),
        ("dead", "dead"),
        ("completed", "completed"),
    ],
)
def test_operational_state_filters(items: Items, viewer: Client, state: str, field: str) -> None:
    assert _ids(viewer, f"?state={state}") == [getattr(items, field)]


def test_status_and_topic_filters(items: Items, viewer: Client) -> None:
    assert _ids(viewer, "?status=failed") == [items.dead]
    assert _ids(viewer, "?status=processing") == sorted([items.in_flight, items.stalled])
    assert _ids(viewer, "?topic=orders.reminder") == [items.scheduled]
    assert len(_ids(viewer)) == 7


def test_search_by_id_topic_dedupe_key_and_trace_id(items: Items, viewer: Client) -> None:
    assert _ids(viewer, f"?q={items.dead}") == [items.dead]
    assert _ids(viewer, "?q=orders.sync") == [items.retrying]
    assert _ids(viewer, "?q=order-1") == [items.ready]
    assert _ids(viewer, "?q=trace-abc") == [items.ready]
    assert _ids(viewer, "?q=trace:trace-abc") == [items.ready]
    assert _ids(viewer, "?q=nothing-matches") == []


def test_header_shows_depth_oldest_pending_age_and_dead_count(items: Items, viewer: Client) -> None:
    response = viewer.get(URL)
    summary = response.context["headrace_summary"]
    assert summary.depth == {"pending": 3, "processing": 2, "completed": 1, "failed": 1}
    assert summary.dead == 1
    assert summary.oldest_pending_age is not None and 0 <= summary.oldest_pending_age < 600
    html = response.content.decode()
    assert 'id="headrace-queue-health"' in html
    assert 'data-status="failed"><strong>failed</strong>: <span class="count">1</span>' in html
    assert response.context["cl"].show_full_result_count is False


def test_list_payload_is_cut_and_detail_is_pretty_printed(items: Items, viewer: Client) -> None:
    listing = viewer.get(URL + "?q=order-1").content.decode()
    assert "x" * 300 not in listing and "x" * 90 in listing
    page = viewer.get(f"{URL}{items.ready}/change/")
    assert page.status_code == 200
    html = page.content.decode()
    assert '<pre class="headrace-json">{\n  &quot;note&quot;' in html
    assert "x" * 300 in html


def test_pages_are_read_only(items: Items) -> None:
    admin = User.objects.create_superuser("root", password="pw")
    client = Client()
    client.force_login(admin)
    assert client.get(URL + "add/").status_code == 403
    assert client.get(f"{URL}{items.ready}/delete/").status_code == 403
    page = client.get(f"{URL}{items.ready}/change/").content.decode()
    assert 'name="_save"' not in page
    assert client.post(f"{URL}{items.ready}/change/", {"topic": "changed"}).status_code == 403
    assert OutboxItem.objects.get(pk=items.ready).topic == "orders.created"


def test_each_action_needs_its_own_permission(items: Items) -> None:
    for action, perm in ACTION_PERMS.items():
        client = staff_client(f"u-{action}", "headrace.view_outboxitem", perm)
        offered = set(client.get(URL).context["cl"].model_admin.get_actions(_request(client)))
        assert action in offered
        assert offered & set(ACTION_PERMS) == {action}, offered
    viewer = staff_client("only-view", "headrace.view_outboxitem")
    assert viewer.get(URL).context["action_form"] is None  # no action offered at all
    # Posting an action without its permission changes nothing.
    response = viewer.post(URL, {"action": "requeue", "_selected_action": [items.dead]})
    assert response.status_code == 200  # the plain list: no action runs
    purger = staff_client("purger", "headrace.view_outboxitem", ACTION_PERMS["purge"])
    refused = purger.post(URL, {"action": "requeue", "index": 0, "_selected_action": [items.dead]}, follow=True)
    assert "No action selected." in [str(m) for m in refused.context["messages"]]
    assert _status(items.dead) == ("failed", 1)


def _request(client: Client) -> Any:
    from django.test import RequestFactory

    request = RequestFactory().get(URL)
    request.user = User.objects.get(pk=client.session["_auth_user_id"])
    return request


def _act(action: str, *ids: int) -> list[str]:
    client = staff_client(f"actor-{action}-{ids[0]}", "headrace.view_outboxitem", ACTION_PERMS[action])
    response = client.post(URL, {"action": action, "_selected_action": list(ids)}, follow=True)
    assert response.status_code == 200
    return [str(m) for m in response.context["messages"]]


def test_requeue_puts_dead_and_completed_items_back_and_leaves_live_leases(items: Items) -> None:
    notes = _act("requeue", items.dead, items.completed, items.in_flight, items.stalled)
    assert _status(items.dead) == ("pending", 0)
    assert _status(items.completed) == ("pending", 0)
    assert _status(items.stalled) == ("pending", 0)
    assert _status(items.in_flight) == ("processing", 1)
    assert any("Requeued 3 item(s)" in n for n in notes), notes
    assert any(f"#{items.in_flight}" in n for n in notes), notes
    requeued = OutboxItem.objects.get(pk=items.dead)
    assert requeued.run_at <= timezone.now() and requeued.lease_owner is None


def test_requeue_skips_an_item_whose_dedupe_key_a_live_item_holds(db: Any) -> None:
    from headrace.django.testing import run_outbox

    def boom(item: Any) -> None:
        raise RuntimeError("no")

    first = enqueue("dedupe.t", {"n": 1}, dedupe_key="k1", max_attempts=1)
    run_outbox({"dedupe.t": boom}, topics=["dedupe.t"])
    second = enqueue("dedupe.t", {"n": 2}, dedupe_key="k1")
    assert first != second
    notes = _act("requeue", first)
    assert _status(first) == ("failed", 1)
    assert any("dedupe key" in n for n in notes), notes


def test_run_now_makes_scheduled_and_retrying_items_due(items: Items, viewer: Client) -> None:
    _act("run_now", items.scheduled, items.retrying, items.dead)
    assert sorted(_ids(viewer, "?state=ready")) == sorted([items.ready, items.scheduled, items.retrying])
    assert _status(items.retrying) == ("pending", 1)  # attempts kept
    assert _status(items.dead) == ("failed", 1)


def test_mark_failed_dead_letters_live_items(items: Items, viewer: Client) -> None:
    _act("mark_failed", items.ready, items.in_flight, items.completed)
    assert _status(items.ready)[0] == "failed"
    assert _status(items.in_flight)[0] == "failed"
    assert _status(items.completed)[0] == "completed"
    assert "marked failed in the admin by actor-mark_failed" in (
        OutboxItem.objects.get(pk=items.ready).last_error or ""
    )


def test_purge_deletes_only_terminal_items(items: Items) -> None:
    notes = _act("purge", items.completed, items.dead, items.ready)
    assert set(OutboxItem.objects.values_list("pk", flat=True)) == {
        items.ready,
        items.scheduled,
        items.retrying,
        items.in_flight,
        items.stalled,
    }
    assert any("Purged 2 item(s)" in n for n in notes) and any(f"#{items.ready}" in n for n in notes)


def _admin_log(model: type[Any]) -> list[tuple[str, str, int, str]]:
    from django.contrib.admin.models import LogEntry
    from django.contrib.contenttypes.models import ContentType

    content_type = ContentType.objects.get_for_model(model, for_concrete_model=False)
    entries = LogEntry.objects.filter(content_type=content_type).order_by("object_id")
    return [(e.user.get_username(), e.object_id or "", e.action_flag, e.get_change_message()) for e in entries]


def test_actions_are_written_to_the_admin_log_for_the_items_they_changed(items: Items) -> None:
    from django.contrib.admin.models import CHANGE, DELETION

    _act("requeue", items.dead, items.in_flight)  # the live lease is left alone: not logged
    _act("purge", items.completed)
    assert _admin_log(OutboxItem) == sorted(
        [
            (f"actor-requeue-{items.dead}", str(items.dead), CHANGE, "Requeued from the admin."),
            (f"actor-purge-{items.completed}", str(items.completed), DELETION, "Purged from the admin."),
        ],
        key=lambda entry: entry[1],
    )


def _changelist_queries(client: Client, per_page: int) -> int:
    from headrace.django.admin import OutboxItemAdmin

    OutboxItemAdmin.list_per_page = per_page
    try:
        with CaptureQueriesContext(connection) as ctx:
            response = client.get(URL)
        assert response.status_code == 200
        assert len(response.context["cl"].result_list) == per_page
        return len(ctx.captured_queries)
    finally:
        OutboxItemAdmin.list_per_page = 50


def test_query_count_is_constant_in_page_size(db: Any) -> None:
    for n in range(40):
        enqueue(f"bulk.t{n % 3}", {"n": n, "blob": "y" * 50}, run_at=timezone.now() + timedelta(seconds=n))
    client = staff_client("counter", "headrace.view_outboxitem", *ACTION_PERMS.values())
    small = _changelist_queries(client, 5)
    large = _changelist_queries(client, 30)
    assert small == large, (small, large)
    assert small <= 12
