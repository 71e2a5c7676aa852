"""Connectors and workflows shared by the workflow tests and their worker subprocesses.

Calls are appended to the JSON-lines file named by ``HR_TEST_CALLS`` so a parent test can see
what a killed subprocess did. ``HR_TEST_CRASH_MARKER`` makes ``notify`` kill its process once.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from headrace.connectors import ActionSpec, Connector, ConnectorError
from headrace.integrations import IntegrationImpl
from headrace.workflows import FilterRegistry, Step, Trigger, Workflow

STRIPE_KEY = "sk_live_51HrTestSecretValue0042"
SLACK_TOKEN = "xoxb-hr-test-slack-token-7731"


def calls(path: str | os.PathLike[str]) -> list[dict[str, Any]]:
    p = Path(path)
    if not p.exists():
        return []
    return [json.loads(line) for line in p.read_text().splitlines() if line.strip()]


class Recorder(Connector):
    """``charge`` (fails transiently ``HR_TEST_CHARGE_FAILURES`` times), ``notify``, ``archive``."""

    key = "recorder"
    display_name = "Recorder"

    @classmethod
    def actions(cls) -> list[ActionSpec]:
        return [
            ActionSpec(
                "charge",
                {
                    "type": "object",
                    "properties": {
                        "order_id": {"type": "string"},
                        "amount": {"type": "number", "minimum": 0},
                        "currency": {"type": "string", "pattern": "^[A-Z]{3}$"},
                        "api_key": {"type": "string", "minLength": 10},
                    },
                    "required": ["order_id", "amount", "currency", "api_key"],
                    "additionalProperties": False,
                },
            ),
            ActionSpec(
                "notify",
                {
                    "type": "object",
                    "properties": {"text": {"type": "string"}, "auth": {"type": "string"}},
                    "required": ["text", "auth"],
                },
            ),
            ActionSpec("archive", {"type": "object", "required": ["order_id", "summary"]}),
        ]

    def _log(self, action: str, outcome: str, input: Mapping[str, Any]) -> None:
        with open(os.environ["HR_TEST_CALLS"], "a", encoding="utf-8") as f:
            f.write(
                json.dumps(
                    {"action": action, "outcome": outcome, "pid": os.getpid(), "order_id": input.get("order_id")}
                )
                + "\n"
            )
            f.flush()
            os.fsync(f.fileno())

    def execute_action(self, action: str, input: Mapping[str, Any]) -> Any:
        path = os.environ["HR_TEST_CALLS"]
        if action == "charge":
            failures = int(os.environ.get("HR_TEST_CHARGE_FAILURES", "0"))
            done = [c for c in calls(path) if c["action"] == "charge"]
            if len(done) < failures:
                self._log(action, "transient", input)
                # The message echoes the key, as careless upstream errors do: it must be redacted.
                raise ConnectorError(
                    f"card network busy (key {input['api_key']})", code="unavailable", retryable=True, retry_after=0.05
                )
            self._log(action, "ok", input)
            return {"charge_id": f"ch_{input['order_id']}", "amount": input["amount"], "used_key": input["api_key"]}
        if action == "notify":
            marker = os.environ.get("HR_TEST_CRASH_MARKER")
            if marker and not os.path.exists(marker):
                Path(marker).write_text("crashed")
                self._log(action, "crash", input)
                os._exit(17)
            if os.environ.get("HR_TEST_NOTIFY_DENIED"):
                self._log(action, "denied", input)
                raise ConnectorError("token revoked", code="unauthorized", retryable=False)
            self._log(action, "ok", input)
            return {"text": input["text"], "sent": True}
        self._log(action, "ok", input)
        return {"archived": input["order_id"], "summary": input["summary"]}


def filters() -> FilterRegistry:
    registry = FilterRegistry()

    @registry.register("format_currency")
    def format_currency(value: float, currency: str = "USD") -> str:
        return f"{currency} {value:,.2f}"

    return registry


def order_workflow(version: int = 1) -> Workflow:
    return Workflow(
        key="order_pipeline",
        version=version,
        name="Charge, notify, archive",
        trigger=Trigger(event_type="order.*", source="shop"),
        conditions={">": [{"var": "event.payload.order.total"}, 0]},
        steps=[
            Step(
                "charge",
                "recorder",
                "charge",
                {
                    "order_id": "{{ event.payload.order.id }}",
                    "amount": "{{ event.payload.order.total }}",
                    "currency": "EUR",
                    "api_key": "$secret:STRIPE_KEY",
                },
            ),
            Step(
                "notify",
                "recorder",
                "notify",
                {
                    "text": "Order {{ event.payload.order.id }}: {{ steps.charge.output.charge_id }} "
                    "{{ steps.charge.output.amount | format_currency('EUR') }} (v{{ execution.version }})",
                    "auth": "Bearer {{ secrets['SLACK_TOKEN'] }}",
                },
            ),
            Step(
                "archive",
                "recorder",
                "archive",
                {"order_id": "{{ event.payload.order.id }}", "summary": "{{ steps.notify.output.text }}"},
            ),
        ],
    )


def engine(store: Any, state: Any, **options: Any) -> Any:
    from headrace.secrets import DictSecretsBackend
    from headrace.workflows import WorkflowEngine

    options.setdefault("workflows", [order_workflow()])
    return WorkflowEngine(
        store,
        state,
        connectors={"recorder": Recorder},
        secrets=DictSecretsBackend({"STRIPE_KEY": STRIPE_KEY, "SLACK_TOKEN": SLACK_TOKEN}),
        filters=filters(),
        retry_delay=0.05,
        **options,
    )


class OverridingLedger(Recorder):
    """Claims the example plugin's key from settings (an override the registry reports)."""

    key = "example_ledger"
    display_name = "Overriding ledger"


class SecondRecorder(Recorder):
    """Another class with the key ``recorder`` (a settings conflict)."""

    display_name = "Second recorder"


class ExampleIntegration(IntegrationImpl):
    """An integration implementation loaded from a dotted path."""

    key = "example_integration"
