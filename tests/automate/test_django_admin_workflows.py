"""Workflows defined in the Django admin: validated by the core's workflow rules, versioned on
each change, run by the engine from a signed webhook, and shown with their runs on the admin
page, where (like the logs and the stored run) no resolved secret appears."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

import pytest

django = pytest.importorskip("django") if os.environ.get("CI") != "true" else __import__("django")

import automate_django  # noqa: E402
import automate_helpers as h  # noqa: E402

ADD = "/admin/headrace_automate/workflowdefinition/add/"
STEPS = [
    {
        "id": "charge",
        "connector": "recorder",
        "action": "charge",
        "input": {
            "order_id": "{{ event.payload.order.id }}",
            "amount": "{{ event.payload.order.total }}",
            "currency": "EUR",
            "api_key": "$secret:STRIPE_KEY",
        },
    },
    {
        "id": "notify",
        "connector": "recorder",
        "action": "notify",
        "input": {
            "text": "Invoice {{ event.payload.order.id }}: {{ steps.charge.output.charge_id }}"
            " (v{{ execution.version }})",
            "auth": "Bearer {{ secrets['SLACK_TOKEN'] }}",
        },
    },
]


def _form(**changes: Any) -> dict[str, str]:
    form = {
        "key": "invoices",
        "name": "Invoice pipeline",
        "active": "on",
        "trigger_source": "shop",
        "trigger_event_type": "invoice.*",
        "conditions": json.dumps({">": [{"var": "event.payload.order.total"}, 0]}),
        "steps": json.dumps(STEPS),
    }
    for name, value in changes.items():
        if value is None:
            form.pop(name)
        else:
            form[name] = value if isinstance(value, str) else json.dumps(value)
    return form


@pytest.fixture(scope="module")
def django_app() -> Any:
    return automate_django.setup()


def test_the_admin_refuses_what_the_core_refuses(django_app: Any) -> None:
    from headrace.django.automate.models import WorkflowDefinition

    client = automate_django.superuser_client()
    unclosed = [{**STEPS[0], "input": {"order_id": "{{ event.payload.order.id "}}]
    cases = {
        "unknown JsonLogic operator": _form(key="bad1", conditions={"like": [1, 1]}),
        "does not compile": _form(key="bad2", steps=unclosed),
        "used twice": _form(key="bad3", steps=[STEPS[0], STEPS[0]]),
        "has no steps": _form(key="bad4", steps=[]),
        "needs id, connector and action": _form(key="bad5", steps=[{"id": "x"}]),
    }
    for message, form in cases.items():
        page = client.post(ADD, form)
        assert page.status_code == 200, f"{message}: accepted ({page.status_code})"
        assert message in page.content.decode(), f"{message!r} is not shown on the form"
    assert not WorkflowDefinition.objects.filter(key__startswith="bad").exists()


def _run_until_done(worker: Any, engine: Any, order_id: str) -> Any:
    for _ in range(100):
        worker.run_until_empty(timeout=10)
        runs = [r for r in engine.executions("invoices") if r.event["payload"]["order"]["id"] == order_id]
        if runs and runs[0].status in ("completed", "failed"):
            return runs[0]
        time.sleep(0.05)
    raise AssertionError(f"no finished run for {order_id}")


def _invoice(client: Any, order_id: str) -> None:
    from headrace.webhooks import signed_headers

    body = json.dumps({"type": "invoice.created", "order": {"id": order_id, "total": 12.5}}).encode()
    posted = automate_django.post(client, "shop", body, signed_headers(automate_django.SECRET, body))
    assert posted.status_code == 202, posted.content


def _dump_database() -> str:
    import sqlite3

    conn = sqlite3.connect(automate_django.DB_FILE)
    tables = [t for (t,) in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
    text = "\n".join(repr(row) for table in tables for row in conn.execute(f'SELECT * FROM "{table}"'))
    conn.close()
    return text


def test_an_admin_workflow_runs_is_versioned_and_shows_its_runs_without_secrets(
    django_app: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    from django.test import Client

    from headrace.django.automate import workflow_source
    from headrace.django.automate.models import WorkflowDefinition

    caplog.set_level("DEBUG")
    monkeypatch.setenv("HR_TEST_CALLS", str(tmp_path / "calls.jsonl"))
    monkeypatch.setenv("HR_TEST_CHARGE_FAILURES", "0")
    admin = automate_django.superuser_client()
    created = admin.post(ADD, _form())
    assert created.status_code == 302, created.content.decode()
    row = WorkflowDefinition.objects.get(key="invoices")
    assert row.version == 1 and row.to_workflow().steps[1].id == "notify"
    change = f"/admin/headrace_automate/workflowdefinition/{row.pk}/change/"

    with automate_django.core_stores() as (store, state):
        engine = h.engine(store, state, workflows=[], sources=[workflow_source()])
        worker = automate_django.events_worker(store, engine)
        webhook = Client()
        _invoice(webhook, "I1")
        first = _run_until_done(worker, engine, "I1")
        assert (first.status, first.version) == ("completed", 1), first.error
        assert first.steps["notify"].output["text"] == "Invoice I1: ch_I1 (v1)"

        # An edit in the admin is a new version; saving without a change is not.
        edited = [
            STEPS[0],
            {
                **STEPS[1],
                "input": {**STEPS[1]["input"], "text": "Paid {{ event.payload.order.id }} (v{{ execution.version }})"},
            },
        ]
        assert admin.post(change, _form(steps=edited)).status_code == 302
        assert admin.post(change, _form(steps=edited)).status_code == 302
        assert WorkflowDefinition.objects.get(pk=row.pk).version == 2
        _invoice(webhook, "I2")
        second = _run_until_done(worker, engine, "I2")
        assert (second.status, second.version) == ("completed", 2)
        assert second.steps["notify"].output["text"] == "Paid I2 (v2)"
        assert engine.execution(first.id, "invoices").version == 1, "a run keeps the version it started with"

        # Deactivated in the admin: the next event starts no run.
        assert admin.post(change, _form(steps=edited, active=None)).status_code == 302
        assert WorkflowDefinition.objects.get(pk=row.pk).version == 2
        _invoice(webhook, "I3")
        worker.run_until_empty(timeout=10)
        assert [r.event["payload"]["order"]["id"] for r in engine.executions("invoices")] == ["I1", "I2"]
        state.wait_for_all_async_operations()

        page = admin.get(change)
        assert page.status_code == 200
        text = page.content.decode()
        assert first.id in text and second.id in text and "ch_I1" in text, "the page lists the runs"
        assert "[REDACTED]" in text, "the charge step's input and output held the key, masked"
        places = {"captured logs": caplog.text, "stored rows": _dump_database(), **automate_django.admin_pages()}
        assert change in places and "/admin/headrace_automate/workflowdefinition/" in places
        for secret in (h.STRIPE_KEY, h.SLACK_TOKEN):
            assert [where for where, seen in places.items() if secret in seen] == []
        assert [c["action"] for c in h.calls(tmp_path / "calls.jsonl")] == ["charge", "notify"] * 2


def test_the_worker_command_runs_admin_workflows(
    django_app: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``manage.py headrace_worker`` with the runtime's handlers runs what the admin defines."""
    from django.core.management import call_command
    from django.test import Client, override_settings

    from headrace import plugins
    from headrace.django.automate import runtime
    from headrace.django.results import state_for
    from headrace.workflows.records import load_executions

    monkeypatch.setenv("HR_TEST_CALLS", str(tmp_path / "calls.jsonl"))
    monkeypatch.setenv("HR_TEST_CHARGE_FAILURES", "0")
    monkeypatch.setenv("HEADRACE_SECRET_STRIPE_KEY", h.STRIPE_KEY)
    monkeypatch.setenv("HEADRACE_SECRET_SLACK_TOKEN", h.SLACK_TOKEN)
    refunds = _form(key="refunds", trigger_event_type="refund.*", conditions=None)
    assert automate_django.superuser_client().post(ADD, refunds).status_code == 302
    handlers = {
        "headrace.events": "headrace.django.automate.runtime.handle_event",
        "headrace.workflow_runs": "headrace.django.automate.runtime.handle_run",
    }
    with override_settings(
        HEADRACE={"DATABASE": "default", "HANDLERS": handlers},
        HEADRACE_PLUGINS={"CONNECTORS": ["automate_helpers.Recorder"]},
        HEADRACE_AUTOMATE={"SECRETS_BACKEND": "env"},
    ):
        plugins.registry("connectors").configure(None)  # read HEADRACE_PLUGINS again
        try:
            body = json.dumps({"type": "refund.created", "order": {"id": "R1", "total": 3}}).encode()
            posted = automate_django.post(Client(), "shop", body, signed_headers_for(body, delivery_id="msg_refund_1"))
            assert posted.status_code == 202
            call_command("headrace_worker", "--burst", "--no-policies", "--no-bridges", verbosity=0)
            state = state_for("default")
            state.wait_for_all_async_operations()
            [run] = load_executions(state, "refunds")
        finally:
            runtime.reset()
            plugins.registry("connectors").configure(None)
    assert (run.status, run.version, run.event["payload"]["order"]["id"]) == ("completed", 1, "R1"), run.error
    assert run.steps["notify"].output["text"] == "Invoice R1: ch_R1 (v1)"
    assert [c["action"] for c in h.calls(tmp_path / "calls.jsonl")] == ["charge", "notify"]
    # The worker recorded its dispatches in the state backend: no admin page shows a secret.
    pages = automate_django.admin_pages()
    assert any(url.startswith("/admin/headrace/invocation/") and url.endswith("/change/") for url in pages)
    for secret in (h.STRIPE_KEY, h.SLACK_TOKEN):
        assert [url for url, text in pages.items() if secret in text] == []


def signed_headers_for(body: bytes, *, delivery_id: str) -> dict[str, str]:
    from headrace.webhooks import signed_headers

    return signed_headers(automate_django.SECRET, body, delivery_id=delivery_id)
