"""Deliberately broken plugins: the contract base classes must fail each of them."""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from headrace import Backend, Metadata
from headrace.connectors import ActionSpec, Connector, TriggerSpec
from headrace.integrations import QueuedClient
from headrace.providers import LLMProvider
from headrace.secrets import SecretsBackend

log = logging.getLogger("headrace_example_plugin.broken")


class NotAConnector:
    """Registered under ``headrace.connectors`` but subclasses nothing."""

    key = "example_not_a_connector"


class BrokenConnector(Connector):
    key = ""  # empty key
    display_name = ""

    @classmethod
    def actions(cls) -> list[ActionSpec]:
        return [ActionSpec("send", {"type": "strnig"})]  # not valid JSON Schema

    @classmethod
    def triggers(cls) -> list[TriggerSpec]:
        return [TriggerSpec("hook", verification_method="trust-me")]

    def execute_action(self, action: str, input: Mapping[str, Any]) -> Any:
        return None

    def normalize_error(self, exc: BaseException) -> Any:
        return exc  # not a ConnectorError, and it echoes the text

    def validate_config(self, config: Mapping[str, Any]) -> Any:  # type: ignore[override]
        return "fine"

    def verify_webhook(self, headers: Mapping[str, str], raw_body: bytes, *, trigger: str | None = None) -> bool:
        return True  # accepts everything: fail-open


class LeakySecretsBackend(SecretsBackend):
    """Logs values, returns '' for a missing key and shows its values in repr."""

    key = "leaky"

    def __init__(self, values: Mapping[str, str] | None = None) -> None:
        self.values = dict(values or {})

    def get_secret(self, key: str) -> str:
        value = self.values.get(key, "")
        log.info("resolved %s=%s", key, value)
        return value

    def __repr__(self) -> str:
        return f"LeakySecretsBackend({self.values})"


class BrokenProvider(LLMProvider):
    key = "broken_llm"
    display_name = "Broken"

    @classmethod
    def config_schema(cls) -> dict[str, Any]:
        return {"type": 12}

    def normalize_error(self, exc: BaseException) -> Any:
        return RuntimeError(str(exc))

    def chat(self, messages: Sequence[Mapping[str, Any]], options: Mapping[str, Any] | None = None) -> str:
        return ""

    def count_tokens(self, text: str) -> int:
        return -1


class BrokenBackend(Backend):
    @classmethod
    def describe(cls) -> Metadata:
        return Metadata(name="broken", app_name="broken", app_version="0")

    def run(self, policy_name: str, policy: Any, **kwargs: Any) -> Iterable[Any]:
        yield object()  # not serialisable


class BrokenQueuedClient(QueuedClient):
    key = "broken_queued"
    topic = "broken.queued"
    max_retries = 0

    def run(self, payload: Any) -> Any:
        raise RuntimeError("always fails")
