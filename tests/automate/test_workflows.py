"""Workflows end to end: signed webhook → event → run → three connector calls, through the outbox.

Covers a transient step retried through the outbox, a crash recovered without repeating the
steps that succeeded, a run whose attempts are all used up by crashes, a permanent failure,
versioning, one run per event, signals fired once each, and the secret values grepped for in the
logs, the stored run and the database.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import textwrap
import time
from collections import Counter
from pathlib import Path
from typing import Any

import automate_helpers as h
import pytest

from headrace import signals
from headrace.outbox import OutboxReaper, OutboxStore, RetryPolicy
from headrace.webhooks import WebhookSource, receive, signed_headers
from headrace.worker import OutboxWorker
from headrace.workflows import RUN_TOPIC, Step, Trigger, Workflow

SECRET = "whsec_c2hvcC13ZWJob29rLXNpZ25pbmcta2V5"
HERE = Path(__file__).resolve().parent


@pytest.fixture
def calls_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "calls.jsonl"
    monkeypatch.setenv("HR_TEST_CALLS", str(path))
    monkeypatch.delenv("HR_TEST_CRASH_MARKER", raising=False)
    monkeypatch.delenv("HR_TEST_NOTIFY_DENIED", raising=False)
    monkeypatch.setenv("HR_TEST_CHARGE_FAILURES", "0")
    return path


@pytest.fixture
def fired() -> Any:
    counts: Counter[str] = Counter()
    seen: list[tuple[str, dict[str, Any]]] = []
    receivers = {}
    for name, sig in signals.WORKFLOW_EVENTS.items():

        def receiver(_name: str = name, **kwargs: Any) -> None:
            counts[_name] += 1
            seen.append((_name, kwargs))

        receivers[name] = receiver
        sig.connect(receiver)
    yield counts, seen
    for name, sig in signals.WORKFLOW_EVENTS.items():
        sig.disconnect(receivers[name])


def post_order(store: Any, order_id: str = "A100", total: float = 42.5, delivery_id: str | None = None) -> Any:
    body = json.dumps({"type": "order.created", "order": {"id": order_id, "total": total}}).encode()
    receipt = receive(
        WebhookSource("shop", secrets=(SECRET,)),
        signed_headers(SECRET, body, delivery_id=delivery_id or f"msg_{order_id}"),
        body,
        store,
    )
    assert receipt.status in (200, 202), receipt.body
    return receipt


def drain(store: Any, engine: Any, timeout: float = 20.0) -> None:
    worker = OutboxWorker(store, engine.handlers(), poll_interval=0.05, reaper_interval=None)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        worker.run_until_empty(timeout=timeout)
        stats = store.stats()
        if not stats.get("pending") and not stats.get("processing"):
            return
        time.sleep(0.05)
    raise AssertionError(f"the outbox did not drain: {store.stats()}")


def dump_database(db_url: str) -> str:
    """Every row of every table, as text (to grep for secrets)."""
    rows: list[str] = []
    if db_url.startswith("sqlite"):
        import sqlite3

        conn = sqlite3.connect(db_url.removeprefix("sqlite://"))
        for (table,) in conn.execute("SELECT name FROM sqlite_master WHERE type='table'"):
            for row in conn.execute(f'SELECT * FROM "{table}"'):
                rows.append(repr(row))
        conn.close()
    else:
        import psycopg

        with psycopg.connect(db_url) as conn:
            tables = conn.execute(
                "SELECT table_name FROM information_schema.tables WHERE table_schema = current_schema()"
            ).fetchall()
            for (table,) in tables:
                for row in conn.execute(f'SELECT * FROM "{table}"'):
                    rows.append(repr(row))
    return "\n".join(rows)


def test_three_steps_from_a_signed_webhook_with_a_transient_retry(
    stores: tuple[Any, Any],
    db_url: str,
    calls_file: Path,
    fired: Any,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    store, state = stores
    monkeypatch.setenv("HR_TEST_CHARGE_FAILURES", "1")
    engine = h.engine(store, state)
    caplog.set_level(logging.DEBUG)
    receipt = post_order(store)
    drain(store, engine)

    runs = engine.executions("order_pipeline")
    assert len(runs) == 1
    run = runs[0]
    assert run.status == "completed" and run.version == 1
    assert run.event["trace_id"] == receipt.trace_id
    assert [c["action"] + ":" + c["outcome"] for c in h.calls(calls_file)] == [
        "charge:transient",
        "charge:ok",
        "notify:ok",
        "archive:ok",
    ]
    assert run.steps["charge"].attempts == 2 and run.steps["notify"].attempts == 1
    assert run.steps["archive"].output == {
        "archived": "A100",
        "summary": "Order A100: ch_A100 EUR 42.50 (v1)",
    }
    # Secrets are resolved only when the step runs and never stored resolved.
    assert run.steps["charge"].input["api_key"] == "[REDACTED]"
    assert run.steps["charge"].output["used_key"] == "[REDACTED]"
    assert run.steps["notify"].input["auth"] == "Bearer [REDACTED]"
    counts, seen = fired
    assert counts == Counter(
        event_received=1, workflow_started=1, step_started=4, step_completed=3, step_failed=1, workflow_completed=1
    )
    failed = next(kw for name, kw in seen if name == "step_failed")
    assert failed["step"].id == "charge" and failed["error"]["retryable"] and failed["will_retry"]
    assert h.STRIPE_KEY not in failed["error"]["message"] and "[REDACTED]" in failed["error"]["message"]
    # Grep everything for the secret values.
    stored = json.dumps(
        state.get_workflow_data(
            __import__("headrace.state").state.WorkflowIdentity(run.id, "headrace.workflow:order_pipeline"), "run"
        )
    )
    state.wait_for_all_async_operations()
    everything = "\n".join([caplog.text, stored, dump_database(db_url), repr(run)])
    for secret in (h.STRIPE_KEY, h.SLACK_TOKEN):
        assert secret not in everything
    assert "card network busy" in dump_database(db_url) or "card network busy" in stored


def test_a_crash_is_recovered_without_repeating_successful_steps(
    stores: tuple[Any, Any], db_url: str, calls_file: Path, tmp_path: Path, fired: Any
) -> None:
    store, state = stores
    engine = h.engine(store, state)
    post_order(store, "B7")
    # The event creates the run here; the run itself is executed by a worker process that dies in step 2.
    worker = OutboxWorker(
        store,
        {"headrace.events": engine.handle_event},
        poll_interval=0.05,
        reaper_interval=None,
        topics=["headrace.events"],
    )
    worker.run_until_empty(timeout=10)
    state.wait_for_all_async_operations()
    script = tmp_path / "crashing_worker.py"
    script.write_text(
        textwrap.dedent(f"""
        import automate_helpers as h
        from headrace.outbox import OutboxStore, RetryPolicy
        from headrace.state import StateBackend
        from headrace.worker import OutboxWorker
        store = OutboxStore.connect({db_url!r}, lease_seconds=2.0,
            retry=RetryPolicy(max_attempts=4, base_seconds=0.05, factor=1.0, max_seconds=0.1, jitter=0.0))
        state = StateBackend.connect({db_url!r})
        engine = h.engine(store, state)
        OutboxWorker(store, engine.handlers(), poll_interval=0.05, reaper_interval=None).run_until_empty(timeout=20)
        raise SystemExit(0)
    """)
    )
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(HERE), os.environ.get("PYTHONPATH", "")]),
        "HR_TEST_CRASH_MARKER": str(tmp_path / "crashed"),
    }
    proc = subprocess.run([sys.executable, str(script)], env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 17, proc.stderr[-2000:]
    assert [c["action"] + ":" + c["outcome"] for c in h.calls(calls_file)] == ["charge:ok", "notify:crash"]

    time.sleep(2.2)  # the dead worker's lease expires
    assert OutboxReaper(store, stale_threshold_seconds=600).reap_stale_items() == 1
    drain(store, engine)
    outcomes = [c["action"] + ":" + c["outcome"] for c in h.calls(calls_file)]
    assert outcomes == ["charge:ok", "notify:crash", "notify:ok", "archive:ok"], "charge ran once"
    run = engine.executions("order_pipeline")[0]
    assert run.status == "completed"
    assert run.steps["charge"].attempts == 1 and run.steps["notify"].attempts == 2
    counts, _ = fired
    # workflow_started fired in the killed process; this process only saw the resumed steps.
    assert counts["workflow_completed"] == 1 and counts["step_completed"] == 2 and counts["workflow_started"] == 0


def test_a_run_whose_attempts_are_used_up_by_crashes_is_failed(
    db_url: str, calls_file: Path, tmp_path: Path, fired: Any
) -> None:
    from headrace.state import StateBackend

    retry = RetryPolicy(max_attempts=1, base_seconds=0.05, factor=1.0, max_seconds=0.1, jitter=0.0)
    store = OutboxStore.connect(db_url, lease_seconds=1.0, retry=retry)
    state = StateBackend.connect(db_url)
    try:
        engine = h.engine(store, state)
        post_order(store, "C1")
        OutboxWorker(
            store,
            {"headrace.events": engine.handle_event},
            poll_interval=0.05,
            reaper_interval=None,
            topics=["headrace.events"],
        ).run_until_empty(timeout=10)
        state.wait_for_all_async_operations()
        script = tmp_path / "crash.py"
        script.write_text(
            textwrap.dedent(f"""
            import automate_helpers as h
            from headrace.outbox import OutboxStore, RetryPolicy
            from headrace.state import StateBackend
            from headrace.worker import OutboxWorker
            store = OutboxStore.connect({db_url!r}, lease_seconds=1.0,
                retry=RetryPolicy(max_attempts=1, base_seconds=0.05, factor=1.0, max_seconds=0.1, jitter=0.0))
            engine = h.engine(store, StateBackend.connect({db_url!r}))
            OutboxWorker(store, engine.handlers(), poll_interval=0.05, reaper_interval=None).run_until_empty(timeout=20)
        """)
        )
        env = {
            **os.environ,
            "PYTHONPATH": os.pathsep.join([str(HERE), os.environ.get("PYTHONPATH", "")]),
            "HR_TEST_CRASH_MARKER": str(tmp_path / "crashed"),
        }
        proc = subprocess.run([sys.executable, str(script)], env=env, capture_output=True, text=True, timeout=120)
        assert proc.returncode == 17, proc.stderr[-2000:]
        time.sleep(1.2)
        OutboxReaper(store, stale_threshold_seconds=600).reap_stale_items()
        run_items = [i for i in store.list(topic=RUN_TOPIC)] if hasattr(store, "list") else []
        if run_items:
            assert str(run_items[0].status) == "failed"
        assert engine.executions("order_pipeline")[0].status == "running"
        assert len(engine.reconcile()) == 1
        run = engine.executions("order_pipeline")[0]
        assert run.status == "failed" and run.error is not None and run.error["code"] == "attempts_exhausted"
        assert run.steps["notify"].status == "failed" and run.steps["archive"].status == "pending"
        assert engine.reconcile() == [], "reconciling twice fails nothing more"
        counts, _ = fired
        assert counts["workflow_failed"] == 1
    finally:
        state.wait_for_all_async_operations()
        for closable in (store, state):
            getattr(closable, "close", lambda: None)()


def test_a_permanent_failure_fails_the_run_and_skips_later_steps(
    stores: tuple[Any, Any], calls_file: Path, fired: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    store, state = stores
    monkeypatch.setenv("HR_TEST_NOTIFY_DENIED", "1")
    engine = h.engine(store, state)
    post_order(store, "D4")
    drain(store, engine)
    run = engine.executions("order_pipeline")[0]
    assert run.status == "failed" and run.error is not None
    assert run.error["step"] == "notify" and run.error["code"] == "unauthorized"
    assert run.steps["archive"].status == "pending"
    assert [c["action"] for c in h.calls(calls_file)] == ["charge", "notify"]
    counts, _ = fired
    assert counts["workflow_failed"] == 1 and counts["step_failed"] == 1 and counts["workflow_completed"] == 0


def test_a_missing_template_variable_fails_the_step_with_its_name(stores: tuple[Any, Any], calls_file: Path) -> None:
    store, state = stores
    wf = Workflow(
        "typo",
        Trigger("order.*"),
        [
            Step(
                "s",
                "recorder",
                "archive",
                {"order_id": "{{ event.payload.order.id }}", "summary": "{{ event.payload.order.customer.name }}"},
            )
        ],
    )
    engine = h.engine(store, state, workflows=[wf])
    post_order(store, "E1")
    drain(store, engine)
    run = engine.executions("typo")[0]
    assert run.status == "failed"
    assert run.steps["s"].error is not None and run.steps["s"].error["variable"] == "event.payload.order.customer"
    assert h.calls(calls_file) == []


def test_runs_keep_their_version_and_one_event_starts_one_run(
    stores: tuple[Any, Any], calls_file: Path, fired: Any
) -> None:
    store, state = stores
    engine = h.engine(store, state)
    first = post_order(store, "V1", delivery_id="msg_same")
    pending_replay = post_order(store, "V1", delivery_id="msg_same")  # replayed while pending: stored once
    assert (first.status, pending_replay.status, pending_replay.item_id) == (202, 200, first.item_id)
    events = OutboxWorker(
        store,
        {"headrace.events": engine.handle_event},
        poll_interval=0.05,
        reaper_interval=None,
        topics=["headrace.events"],
    )
    events.run_until_empty(timeout=10)
    engine.register(h.order_workflow(version=2))  # the run already created keeps v1
    drain(store, engine)
    done_replay = post_order(store, "V1", delivery_id="msg_same")  # replayed after it completed
    assert (done_replay.status, done_replay.item_id) == (200, first.item_id), "not stored again"
    assert store.get(first.item_id).status == "completed"
    post_order(store, "V2")
    drain(store, engine)
    runs = engine.executions("order_pipeline")
    assert [(r.event["payload"]["order"]["id"], r.version) for r in runs] == [("V1", 1), ("V2", 2)]
    assert runs[0].steps["notify"].output["text"].endswith("(v1)")
    assert runs[1].steps["notify"].output["text"].endswith("(v2)")
    counts, _ = fired
    assert counts["event_received"] == 2 and counts["workflow_started"] == 2
    assert len(store.list(topic="headrace.events")) == 2, "one stored event per delivery id"


def test_a_raising_receiver_does_not_break_the_run(
    stores: tuple[Any, Any], calls_file: Path, caplog: pytest.LogCaptureFixture
) -> None:
    store, state = stores

    def broken(**kwargs: Any) -> None:
        raise RuntimeError("receiver bug")

    for sig in signals.WORKFLOW_EVENTS.values():
        sig.connect(broken)
    try:
        engine = h.engine(store, state)
        post_order(store, "R1")
        drain(store, engine)
    finally:
        for sig in signals.WORKFLOW_EVENTS.values():
            sig.disconnect(broken)
    assert engine.executions("order_pipeline")[0].status == "completed"
    assert "receiver bug" in caplog.text


def test_definitions_are_checked_and_loadable_from_yaml() -> None:
    from headrace.errors import ConfigError
    from headrace.workflows import load_workflows

    [wf] = load_workflows(
        textwrap.dedent("""
        workflows:
          - key: shipping
            version: 3
            trigger: {source: shop, event_type: "order.*"}
            conditions: {"==": [{"var": "event.payload.country"}, "DE"]}
            steps:
              - {id: label, connector: echo, action: echo, input: {to: "{{ event.payload.address }}"}}
    """)
    )
    assert (
        wf.version == 3
        and wf.trigger.event_type == "order.*"
        and wf.steps[0].input == {"to": "{{ event.payload.address }}"}
    )
    with pytest.raises(ConfigError, match="used twice"):
        Workflow("w", Trigger(), [Step("a", "echo", "echo"), Step("a", "echo", "echo")])
    with pytest.raises(ConfigError, match="no steps"):
        Workflow("w", Trigger(), [])
    with pytest.raises(ConfigError, match="unknown JsonLogic operator"):
        load_workflows("key: w\nsteps: [{id: a, connector: echo, action: echo}]\nconditions: {like: [1, 1]}")


def test_workflow_sources_are_refreshed_edits_deactivations_and_refusals(caplog: pytest.LogCaptureFixture) -> None:
    from headrace.workflows import WorkflowEngine

    current = [h.order_workflow(version=1)]
    engine = WorkflowEngine(None, None, sources=[lambda: list(current)])
    engine.refresh()
    assert [(w.key, w.version, w.active) for w in engine.live_workflows()] == [("order_pipeline", 1, True)]
    current[:] = [h.order_workflow(version=2)]
    engine.refresh()
    assert engine.workflow("order_pipeline").version == 2 and engine.workflow("order_pipeline", 1).version == 1
    changed = Workflow("order_pipeline", Trigger(), [Step("s", "echo", "echo")], version=2)
    current[:] = [changed]
    engine.refresh()  # a different definition under a taken version is refused, v2 stays live
    assert engine.workflow("order_pipeline").steps[0].id == "charge"
    assert "is refused" in caplog.text and "already registered with a different definition" in caplog.text
    current[:] = []
    engine.refresh()  # gone from the source: it starts no more runs
    assert [(w.version, w.active) for w in engine.live_workflows()] == [(2, False)]
    assert not engine.workflow("order_pipeline").matches(
        {"source": "shop", "type": "order.created", "payload": {"order": {"total": 5}}}
    )
