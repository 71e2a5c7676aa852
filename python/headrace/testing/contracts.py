"""Contract base classes: subclass one with ``adapter_cls = YourClass`` and pytest checks it.

Each check is a plain ``test_*`` method, so a failure names the broken rule. Set
``adapter_cls`` on the subclass; the base classes themselves collect no tests
(``__test__`` is switched on only for subclasses that set it).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar

import pytest

from headrace._core import JsonSchema, check_json_schema
from headrace.errors import ConfigError, ConnectorError, SecretNotFoundError

__all__ = [
    "BackendContractTest",
    "ConnectorContractTest",
    "ProviderContractTest",
    "QueuedClientContractTest",
    "SecretsBackendContractTest",
]

_SENTINEL = "hr-contract-s3cret-9f1c2e"


class _Contract:
    adapter_cls: ClassVar[Any] = None

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        # Collect the checks only in a subclass that names the class under test.
        named = cls.__dict__.get("adapter_cls") is not None or any(
            getattr(base, "adapter_cls", None) is not None for base in cls.__mro__[1:] if base is not _Contract
        )
        setattr(cls, "__test__", named)  # noqa: B010

    def make(self) -> Any:
        """Builds the instance under test (override when the constructor needs arguments)."""
        return self.adapter_cls()


class ConnectorContractTest(_Contract):
    """Checks a :class:`~headrace.connectors.Connector` or ``ConnectorAdapter``."""

    def test_constructs_without_arguments(self) -> None:
        self.make()

    def test_is_a_connector(self) -> None:
        from headrace.connectors import Connector, ConnectorAdapter

        assert issubclass(self.adapter_cls, (Connector, ConnectorAdapter)), (
            f"{self.adapter_cls!r} must subclass headrace.connectors.Connector or ConnectorAdapter"
        )

    def test_key_and_name_are_non_empty_strings(self) -> None:
        key = getattr(self.adapter_cls, "key", "") or getattr(self.adapter_cls, "code", "")
        name = getattr(self.adapter_cls, "display_name", "") or getattr(self.adapter_cls, "name", "")
        assert isinstance(key, str) and key, "the connector needs a non-empty 'key' (or 'code')"
        assert isinstance(name, str) and name, "the connector needs a non-empty 'display_name' (or 'name')"

    def test_key_matches_its_registry_key(self) -> None:
        from headrace.connectors import connector_key
        from headrace.plugins import registry

        connectors = registry("connectors")
        for info in connectors.plugins():
            if info.cls is self.adapter_cls:
                assert info.key == connector_key(self.adapter_cls), (
                    f"registered as {info.key!r} but its key is {connector_key(self.adapter_cls)!r}"
                )

    def test_every_action_is_an_action_spec_with_a_valid_input_schema(self) -> None:
        from headrace.connectors import ActionSpec, action_specs

        specs = action_specs(self.make())
        for name, spec in specs.items():
            assert isinstance(spec, ActionSpec), f"action {name!r} is {spec!r}, not an ActionSpec"
            assert spec.name == name
            if spec.input_schema is not None:
                check_json_schema(spec.input_schema)

    def test_triggers_use_a_known_verification_method(self) -> None:
        from headrace.connectors import VERIFICATION_METHODS, Connector, TriggerSpec

        if not issubclass(self.adapter_cls, Connector):
            pytest.skip("ConnectorAdapter declares no triggers")
        for trigger in self.adapter_cls.triggers():
            assert isinstance(trigger, TriggerSpec)
            assert trigger.verification_method in VERIFICATION_METHODS, trigger

    def test_an_unknown_action_is_an_invalid_argument_error(self) -> None:
        from headrace.connectors import invoke

        with pytest.raises(ConnectorError) as caught:
            invoke(self.make(), "__no_such_action__", {})
        assert caught.value.code == "invalid_argument", caught.value.to_dict()

    def test_an_input_violating_the_schema_is_refused_before_any_call(self) -> None:
        from headrace.connectors import action_specs, invoke

        instance = self.make()
        for name, spec in action_specs(instance).items():
            schema = spec.input_schema
            probe = _violating(schema) if schema else {}
            if not schema or JsonSchema(schema).errors(probe) == []:
                continue
            with pytest.raises(ConnectorError) as caught:
                invoke(instance, name, probe)
            assert caught.value.code == "invalid_argument"
            assert caught.value.errors, "the error lists the failing fields"

    def test_normalize_error_returns_a_safe_connector_error(self) -> None:
        from headrace.connectors import connector_key

        instance = self.make()
        error = instance.normalize_error(ValueError(f"upstream echoed {_SENTINEL}"))
        assert isinstance(error, ConnectorError), f"normalize_error returned {error!r}"
        assert isinstance(error.code, str) and error.code
        assert isinstance(error.retryable, bool)
        assert error.connector == connector_key(instance)
        assert _SENTINEL not in str(error), "normalize_error must not echo the exception text (it may hold secrets)"

    def test_validate_config_reports_ok_and_errors(self) -> None:
        instance = self.make()
        result = instance.validate_config({})
        if isinstance(result, list):
            assert all(isinstance(e, Mapping) for e in result)
        else:
            assert isinstance(result.ok, bool) and isinstance(result.errors, list)

    def test_webhooks_fail_closed_without_a_secret(self) -> None:
        from headrace.connectors import Connector
        from headrace.webhooks import signed_headers

        if not issubclass(self.adapter_cls, Connector):
            pytest.skip("ConnectorAdapter receives no webhooks")
        body = b'{"type": "contract.probe"}'
        headers = signed_headers("whsec_" + "Y29udHJhY3Q=", body)
        assert self.adapter_cls({}).verify_webhook(headers, body) is False


def _violating(schema: Mapping[str, Any]) -> Any:
    """An object that breaks ``schema``: a wrong type for a declared property or a missing field."""
    props = schema.get("properties") or {}
    for name, sub in props.items():
        wanted = sub.get("type") if isinstance(sub, Mapping) else None
        if wanted in ("string", "integer", "number", "boolean", "array", "object"):
            wrong: Any = [] if wanted != "array" else "not-an-array"
            candidate = {name: wrong}
            if JsonSchema(schema).errors(candidate):
                return candidate
    return {}


class SecretsBackendContractTest(_Contract):
    """Checks a :class:`~headrace.secrets.SecretsBackend`.

    The backend is seeded through ``adapter_cls.for_testing(values, tmp_path, monkeypatch)``
    when it defines that classmethod, else constructed as ``adapter_cls(values)``; override
    :meth:`seeded` for anything else.
    """

    def seeded(self, values: Mapping[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
        factory = getattr(self.adapter_cls, "for_testing", None)
        if factory is not None:
            return factory(dict(values), tmp_path, monkeypatch)
        return self.adapter_cls(dict(values))

    def test_is_a_secrets_backend(self) -> None:
        from headrace.secrets import SecretsBackend

        assert issubclass(self.adapter_cls, SecretsBackend)

    def test_resolves_a_seeded_secret(self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        backend = self.seeded({"CONTRACT_KEY": _SENTINEL}, tmp_path, monkeypatch)
        assert backend.get_secret("CONTRACT_KEY") == _SENTINEL

    def test_a_missing_secret_raises_the_typed_error(self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        backend = self.seeded({"CONTRACT_KEY": _SENTINEL}, tmp_path, monkeypatch)
        with pytest.raises(SecretNotFoundError) as caught:
            backend.get_secret("CONTRACT_MISSING")
        assert caught.value.key == "CONTRACT_MISSING"
        assert isinstance(caught.value, LookupError)

    def test_never_logs_or_shows_a_value(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
    ) -> None:
        backend = self.seeded({"CONTRACT_KEY": _SENTINEL}, tmp_path, monkeypatch)
        with caplog.at_level(logging.DEBUG):
            backend.get_secret("CONTRACT_KEY")
            try:
                backend.get_secret("CONTRACT_MISSING")
            except SecretNotFoundError as exc:
                assert _SENTINEL not in str(exc) and _SENTINEL not in repr(exc)
        assert _SENTINEL not in caplog.text, "the secret value was logged"
        assert _SENTINEL not in repr(backend) and _SENTINEL not in str(backend)

    def test_refuses_path_like_keys(self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        backend = self.seeded({"CONTRACT_KEY": _SENTINEL}, tmp_path, monkeypatch)
        for bad in ("../CONTRACT_KEY", "a/b", "", "x\x00y"):
            with pytest.raises((ConfigError, SecretNotFoundError)):
                backend.get_secret(bad)


class ProviderContractTest(_Contract):
    """Checks a :class:`~headrace.providers.BaseProvider` (and the LLM contract when it is one)."""

    def test_is_a_provider_with_key_and_name(self) -> None:
        from headrace.providers import BaseProvider

        assert issubclass(self.adapter_cls, BaseProvider)
        assert isinstance(self.adapter_cls.key, str) and self.adapter_cls.key
        assert isinstance(self.adapter_cls.display_name, str) and self.adapter_cls.display_name

    def test_config_schema_is_valid_json_schema(self) -> None:
        check_json_schema(self.adapter_cls.config_schema())

    def test_normalize_error_is_canonical(self) -> None:
        error = self.make().normalize_error(RuntimeError(f"boom {_SENTINEL}"))
        assert isinstance(error, ConnectorError)
        assert error.connector == self.adapter_cls.key
        assert _SENTINEL not in str(error)

    def test_http_statuses_map_to_retryability(self) -> None:
        class Upstream(Exception):
            def __init__(self, status: int, headers: dict[str, str] | None = None) -> None:
                super().__init__(f"HTTP {status}")
                self.status = status
                self.headers = headers or {}

        provider = self.make()
        limited = provider.normalize_error(Upstream(429, {"Retry-After": "7"}))
        assert limited.retryable and limited.code == "rate_limited" and limited.retry_after == 7.0
        for status in (401, 403):
            denied = provider.normalize_error(Upstream(status))
            assert not denied.retryable, f"HTTP {status} must not be retryable"

    def test_llm_contract(self) -> None:
        from headrace.providers import LLMProvider

        if not issubclass(self.adapter_cls, LLMProvider):
            pytest.skip("not an LLM provider")
        provider = self.make()
        reply = provider.chat([{"role": "user", "content": "hello there"}], {})
        assert isinstance(reply, str) and reply
        short, long = provider.count_tokens("one"), provider.count_tokens("one two three four five")
        assert isinstance(short, int) and short >= 0
        assert long > short, "count_tokens grows with the text"


class BackendContractTest(_Contract):
    """Checks a policy-runner :class:`~headrace.Backend` (``describe()`` and ``run()``).

    ``policy`` (a dict with ``config`` and ``scope``) is what ``run`` is called with.
    """

    policy: ClassVar[dict[str, Any]] = {"config": {}, "scope": {}}

    def test_is_a_backend(self) -> None:
        from headrace.backend import Backend

        assert issubclass(self.adapter_cls, Backend)

    def test_describe_returns_metadata(self) -> None:
        from headrace.backend import Metadata

        meta = self.adapter_cls.describe()
        assert isinstance(meta, Metadata)
        assert meta.name and meta.app_name and meta.app_version

    def test_run_yields_serialisable_entities(self) -> None:
        import json

        from headrace.runner import Policy

        backend = self.make()
        config = {"package": self.adapter_cls.__module__, **self.policy.get("config", {})}
        policy = Policy.model_validate({"config": config, "scope": self.policy.get("scope", {})})
        entities = list(backend.run("contract", policy))
        for entity in entities:
            if hasattr(entity, "SerializeToString"):
                continue
            if hasattr(entity, "model_dump"):
                entity = entity.model_dump(mode="json")
            json.dumps(entity, default=lambda o: o.__dict__)


class QueuedClientContractTest(_Contract):
    """Checks a :class:`~headrace.integrations.QueuedClient`; ``payload`` is what ``run`` gets."""

    payload: ClassVar[Any] = {}

    def test_is_a_queued_client(self) -> None:
        from headrace.integrations import QueuedClient

        assert issubclass(self.adapter_cls, QueuedClient)

    def test_topic_and_retry_policy(self) -> None:
        from headrace.outbox import RetryPolicy

        topic = self.adapter_cls.topic_name()
        assert isinstance(topic, str) and topic
        assert isinstance(self.adapter_cls.retry_policy(), RetryPolicy)

    def test_runs_through_the_outbox(self, headrace_outbox: Any, headrace_worker: Any) -> None:
        client = self.make()
        item_id = client.enqueue(self.payload, store=headrace_outbox)
        headrace_worker([self.adapter_cls]).run_until_empty(timeout=10.0)
        item = headrace_outbox.get(item_id)
        assert str(item.status) == "completed", f"the item ended {item.status}: {item.last_error}"
