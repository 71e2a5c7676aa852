"""A ledger connector (the ``Connector`` contract) and a log adapter (``ConnectorAdapter``)."""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from headrace.connectors import ActionSpec, Connector, ConnectorAdapter, ConnectorError, TriggerSpec, ValidationResult

log = logging.getLogger("headrace_example_plugin")


class LedgerConnector(Connector):
    """Appends to a JSON-lines ledger file (config ``path``, else ``$EXAMPLE_LEDGER_PATH``)."""

    key = "example_ledger"
    display_name = "Example ledger"

    @classmethod
    def config_schema(cls) -> dict[str, Any]:
        return {
            "type": "object",
            "properties": {
                "path": {"type": "string"},
                "signing_secrets": {"type": "array", "items": {"type": "string"}},
            },
            "additionalProperties": False,
        }

    @classmethod
    def actions(cls) -> list[ActionSpec]:
        return [
            ActionSpec(
                "record",
                {
                    "type": "object",
                    "properties": {
                        "order_id": {"type": "string", "minLength": 1},
                        "amount": {"type": "number", "minimum": 0},
                        "currency": {"type": "string", "pattern": "^[A-Z]{3}$"},
                    },
                    "required": ["order_id", "amount", "currency"],
                    "additionalProperties": False,
                },
                idempotent=True,
                description="records an order in the ledger",
            ),
            ActionSpec(
                "notify",
                {
                    "type": "object",
                    "properties": {
                        "channel": {"type": "string"},
                        "text": {"type": "string"},
                        "auth": {"type": "string"},
                    },
                    "required": ["channel", "text"],
                },
                description="writes a notification line",
            ),
        ]

    @classmethod
    def triggers(cls) -> list[TriggerSpec]:
        return [TriggerSpec("order.created", verification_method="hmac")]

    def _path(self) -> Path:
        path = self.config.get("path") or os.environ.get("EXAMPLE_LEDGER_PATH")
        if not path:
            raise ConnectorError("no ledger path configured", code="invalid_argument", connector=self.key)
        return Path(path)

    def execute_action(self, action: str, input: Mapping[str, Any]) -> Any:
        line = {"action": action, **input}
        with self._path().open("a", encoding="utf-8") as f:
            f.write(json.dumps(line) + "\n")
        log.info("ledger %s written", action)
        if action == "record":
            return {"recorded": input["order_id"], "total": input["amount"]}
        return {"sent": True, "channel": input["channel"]}


class LogAdapter(ConnectorAdapter):
    """Logs messages (the seed's second contract)."""

    code = "example_log"
    name = "Example log"

    def validate_config(self, config: Mapping[str, Any]) -> ValidationResult:
        level = config.get("level", "INFO")
        if level not in ("DEBUG", "INFO", "WARNING"):
            return ValidationResult(ok=False, errors=[f"unknown level {level!r}"])
        return ValidationResult(ok=True)

    @property
    def action_specs(self) -> Mapping[str, ActionSpec]:
        return {
            "write": ActionSpec(
                "write",
                {"type": "object", "properties": {"message": {"type": "string"}}, "required": ["message"]},
            )
        }

    def execute(self, action: str, params: Mapping[str, Any], context: Mapping[str, Any]) -> Any:
        log.info("example_log: %s", params["message"])
        return {"logged": True, "execution": context.get("execution_id")}
