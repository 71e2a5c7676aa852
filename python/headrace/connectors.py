"""Connectors: actions with JSON Schema inputs, triggers with verified webhooks.

Two contracts are accepted:

- :class:`Connector` (``key``, ``display_name``, ``actions()`` → :class:`ActionSpec`,
  ``triggers()`` → :class:`TriggerSpec`, ``execute_action(action, input)``,
  ``verify_webhook(headers, raw_body)``);
- :class:`ConnectorAdapter` (``code``, ``name``, ``execute(action, params, context)``, optional
  ``validate_config`` and ``action_specs``).

:func:`invoke` is the one way a step calls either: an unknown action or an input that fails the
action's ``input_schema`` (validated in Rust by the ``jsonschema`` crate) raises
:class:`ConnectorError` with code ``invalid_argument`` and a per-field ``errors`` list before the
connector is called; anything the connector raises reaches the caller as a
:class:`ConnectorError` carrying the code, a safe message, ``retryable`` and the connector key.
"""

from __future__ import annotations

import logging
import threading
import time
from abc import abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

from headrace._core import JsonSchema, check_json_schema
from headrace.errors import ConfigError, ConnectorError
from headrace.providers import BaseProvider
from headrace.webhooks import verify_headers

__all__ = [
    "ActionSpec",
    "Connector",
    "ConnectorAdapter",
    "ConnectorError",
    "EchoConnector",
    "TriggerSpec",
    "ValidationResult",
    "action_specs",
    "connector_key",
    "invoke",
]

log = logging.getLogger("headrace.connectors")

VERIFICATION_METHODS = ("hmac", "hmac_hex", "none")


@dataclass(frozen=True)
class ActionSpec:
    """One action: its name, the JSON Schema of its input, whether repeating it is harmless."""

    name: str
    input_schema: Mapping[str, Any] | None = None
    idempotent: bool = False
    description: str = ""
    output_schema: Mapping[str, Any] | None = None


@dataclass(frozen=True)
class TriggerSpec:
    """One incoming event type and how its webhooks are verified.

    ``hmac`` is Standard Webhooks (signed id, timestamp and body; replay window), ``hmac_hex`` a
    hex HMAC of the body (``X-Hub-Signature-256``), ``none`` accepts unsigned requests and must be
    chosen explicitly.
    """

    name: str
    verification_method: str = "hmac"
    description: str = ""
    payload_schema: Mapping[str, Any] | None = None


@dataclass(frozen=True)
class ValidationResult:
    ok: bool
    errors: list[str] = field(default_factory=list)


class Connector(BaseProvider):
    """A connector in the seed's first contract (see the module doc)."""

    @classmethod
    @abstractmethod
    def actions(cls) -> list[ActionSpec]:
        """The actions this connector executes."""

    @classmethod
    def triggers(cls) -> list[TriggerSpec]:
        """The webhook triggers this connector receives (default: none)."""
        return []

    @abstractmethod
    def execute_action(self, action: str, input: Mapping[str, Any]) -> Any:
        """Performs ``action``; ``input`` was already validated against its schema."""

    def webhook_secrets(self) -> list[str]:
        """The secrets webhooks are verified with: config ``signing_secrets`` (or ``signing_secret``)."""
        many = self.config.get("signing_secrets")
        if many:
            return [str(s) for s in many]
        one = self.config.get("signing_secret")
        return [str(one)] if one else []

    def verify_webhook(self, headers: Mapping[str, str], raw_body: bytes, *, trigger: str | None = None) -> bool:
        """Whether a webhook verifies with this connector's secrets (fails closed without one)."""
        method = "hmac"
        if trigger is not None:
            specs = {t.name: t for t in self.triggers()}
            if trigger not in specs:
                return False
            method = specs[trigger].verification_method
        try:
            verify_headers(headers, raw_body, self.webhook_secrets(), method=method)
        except ConnectorError:
            raise
        except Exception:
            return False
        return True


class ConnectorAdapter:
    """A connector in the seed's second contract: ``code``, ``name``, ``execute(action, params, context)``."""

    code: ClassVar[str] = ""
    name: ClassVar[str] = ""

    @abstractmethod
    def execute(self, action: str, params: Mapping[str, Any], context: Mapping[str, Any]) -> Any:
        """Performs the side effect; must raise :class:`ConnectorError` on failure."""

    def validate_config(self, config: Mapping[str, Any]) -> ValidationResult:
        """Optional: validates setup configuration (default: accepts anything)."""
        return ValidationResult(ok=True)

    @property
    def action_specs(self) -> Mapping[str, ActionSpec]:
        """Declared actions; when empty every action name is passed through unvalidated."""
        return {}

    def normalize_error(self, exc: BaseException) -> ConnectorError:
        if isinstance(exc, ConnectorError):
            if exc.connector is None:
                exc.connector = self.code
            return exc
        return ConnectorError(f"{type(exc).__name__} in {self.code}", code="internal", connector=self.code)


def connector_key(connector: object) -> str:
    """The registry key of a connector class or instance (``key``, else ``code``)."""
    key = getattr(connector, "key", "") or getattr(connector, "code", "")
    if not isinstance(key, str) or not key:
        raise ConfigError(f"{connector!r} has neither a 'key' nor a 'code' string")
    return key


def action_specs(connector: object) -> dict[str, ActionSpec]:
    """The declared actions of either contract, by name."""
    if isinstance(connector, Connector) or (isinstance(connector, type) and issubclass(connector, Connector)):
        specs = connector.actions()
        return {s.name: s for s in specs}
    specs_attr = getattr(connector, "action_specs", None)
    if isinstance(specs_attr, Mapping):
        return dict(specs_attr)
    return {}


_schema_cache: dict[int, tuple[Mapping[str, Any], JsonSchema]] = {}
_cache_lock = threading.Lock()


def _compiled(schema: Mapping[str, Any]) -> JsonSchema:
    with _cache_lock:
        hit = _schema_cache.get(id(schema))
        if hit is not None and hit[0] is schema:
            return hit[1]
        compiled = JsonSchema(schema)
        _schema_cache[id(schema)] = (schema, compiled)
        return compiled


def check_action_specs(connector: object) -> None:
    """Raises ``ConfigError`` unless every declared ``input_schema`` is valid JSON Schema."""
    for name, spec in action_specs(connector).items():
        if spec.input_schema is not None:
            try:
                check_json_schema(spec.input_schema)
            except ConfigError as exc:
                raise ConfigError(f"action {name!r} of {connector_key(connector)!r}: {exc.message}") from None


def invoke(
    connector: Connector | ConnectorAdapter,
    action: str,
    input: Mapping[str, Any],
    *,
    context: Mapping[str, Any] | None = None,
) -> Any:
    """Validates ``input`` and calls the connector; every failure is a :class:`ConnectorError`."""
    key = connector_key(connector)
    specs = action_specs(connector)
    adapter_passthrough = isinstance(connector, ConnectorAdapter) and not specs
    spec = specs.get(action)
    if spec is None and not adapter_passthrough:
        known = ", ".join(sorted(specs)) or "none"
        raise ConnectorError(
            f"connector {key!r} has no action {action!r} (actions: {known})",
            code="invalid_argument",
            connector=key,
            errors=[{"path": "", "schema_path": "", "message": f"unknown action {action!r}"}],
        )
    if not isinstance(input, Mapping):
        raise ConnectorError(
            f"the input of {key}.{action} must be an object, got {type(input).__name__}",
            code="invalid_argument",
            connector=key,
        )
    if spec is not None and spec.input_schema is not None:
        errors = _compiled(spec.input_schema).errors(dict(input))
        if errors:
            listed = "; ".join(f"{e['path'] or '/'}: {e['message']}" for e in errors)
            raise ConnectorError(
                f"invalid input for {key}.{action}: {listed}", code="invalid_argument", connector=key, errors=errors
            )
    started = time.perf_counter()
    try:
        if isinstance(connector, Connector):
            result = connector.execute_action(action, dict(input))
        else:
            result = connector.execute(action, dict(input), dict(context or {}))
    except BaseException as exc:
        if not isinstance(exc, Exception):
            raise
        error = connector.normalize_error(exc)
        if not isinstance(error, ConnectorError):
            error = ConnectorError(f"{type(exc).__name__} in {key}", code="internal", connector=key)
        if error.connector is None:
            error.connector = key
        log.info(
            "connector %s.%s failed: %s (retryable=%s, %.1f ms)",
            key,
            action,
            error.code,
            error.retryable,
            (time.perf_counter() - started) * 1000,
        )
        raise error from exc
    log.info("connector %s.%s succeeded (%.1f ms)", key, action, (time.perf_counter() - started) * 1000)
    return result


class EchoConnector(Connector):
    """A built-in connector that returns its input: ``echo`` (any object) and ``fail`` (always fails)."""

    key = "echo"
    display_name = "Echo"

    @classmethod
    def actions(cls) -> list[ActionSpec]:
        return [
            ActionSpec("echo", {"type": "object"}, idempotent=True, description="returns its input"),
            ActionSpec(
                "fail",
                {
                    "type": "object",
                    "properties": {"code": {"type": "string"}, "retryable": {"type": "boolean"}},
                    "required": ["code"],
                },
                description="raises a ConnectorError with the given code",
            ),
        ]

    @classmethod
    def triggers(cls) -> list[TriggerSpec]:
        return [TriggerSpec("echo.event", verification_method="hmac")]

    def execute_action(self, action: str, input: Mapping[str, Any]) -> Any:
        if action == "fail":
            raise ConnectorError(
                f"asked to fail with {input['code']}",
                code=str(input["code"]),
                retryable=bool(input.get("retryable", False)),
            )
        return dict(input)


def builtin_connectors() -> Sequence[type[Connector]]:
    return (EchoConnector,)
