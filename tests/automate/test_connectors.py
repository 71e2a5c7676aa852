"""Connectors: schema validation per field before any side effect, and one error shape."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pytest

from headrace._core import JsonSchema, check_json_schema
from headrace.connectors import ActionSpec, Connector, ConnectorAdapter, EchoConnector, invoke
from headrace.errors import ConfigError, ConnectorError
from headrace.providers import EchoLLMProvider, error_from_status


class Shop(Connector):
    key = "shop"
    display_name = "Shop"
    calls: list[tuple[str, dict[str, Any]]]

    def __init__(self, config: Mapping[str, Any] | None = None) -> None:
        super().__init__(config)
        self.calls = []

    @classmethod
    def actions(cls) -> list[ActionSpec]:
        return [
            ActionSpec(
                "create_order",
                {
                    "type": "object",
                    "properties": {
                        "sku": {"type": "string", "minLength": 3},
                        "qty": {"type": "integer", "minimum": 1},
                        "email": {"type": "string", "format": "email"},
                        "lines": {"type": "array", "items": {"type": "object", "required": ["price"]}},
                    },
                    "required": ["sku", "qty"],
                    "additionalProperties": False,
                },
            ),
            ActionSpec("upstream", {"type": "object"}),
        ]

    def execute_action(self, action: str, input: Mapping[str, Any]) -> Any:
        self.calls.append((action, dict(input)))
        if action == "upstream":
            status = int(input["status"])
            headers = {"Retry-After": "12"} if status == 429 else {}
            raise error_from_status(status, headers=headers)
        return {"order": "O-1"}


def test_a_valid_input_reaches_the_connector() -> None:
    shop = Shop()
    assert invoke(shop, "create_order", {"sku": "ABC", "qty": 2}) == {"order": "O-1"}
    assert shop.calls == [("create_order", {"sku": "ABC", "qty": 2})]


def test_invalid_input_lists_every_field_and_calls_nothing() -> None:
    shop = Shop()
    with pytest.raises(ConnectorError) as caught:
        invoke(shop, "create_order", {"sku": "A", "qty": 0, "lines": [{"x": 1}], "extra": "y"})
    err = caught.value
    assert err.code == "invalid_argument" and not err.retryable and err.connector == "shop"
    paths = sorted(e["path"] for e in err.errors)
    assert paths == ["", "/lines/0", "/qty", "/sku"], err.errors
    by_path = {e["path"]: e for e in err.errors}
    assert by_path["/qty"]["schema_path"] == "/properties/qty/minimum"
    assert "extra" in by_path[""]["message"]
    with pytest.raises(ConnectorError) as missing:
        invoke(shop, "create_order", {"sku": "ABC"})
    assert [e["path"] for e in missing.value.errors] == [""] and "qty" in missing.value.errors[0]["message"]
    assert shop.calls == []


def test_an_unknown_action_is_invalid_argument() -> None:
    shop = Shop()
    with pytest.raises(ConnectorError) as caught:
        invoke(shop, "delete_everything", {})
    assert caught.value.code == "invalid_argument" and "create_order" in str(caught.value)
    assert shop.calls == []


def test_upstream_statuses_map_to_retryability() -> None:
    shop = Shop()
    with pytest.raises(ConnectorError) as limited:
        invoke(shop, "upstream", {"status": 429})
    assert limited.value.code == "rate_limited" and limited.value.retryable and limited.value.retry_after == 12.0
    assert limited.value.connector == "shop"
    for status, code in ((401, "unauthorized"), (403, "forbidden")):
        with pytest.raises(ConnectorError) as denied:
            invoke(shop, "upstream", {"status": status})
        assert denied.value.code == code and not denied.value.retryable
    with pytest.raises(ConnectorError) as down:
        invoke(shop, "upstream", {"status": 503})
    assert down.value.retryable and down.value.code == "unavailable"


def test_arbitrary_exceptions_become_safe_connector_errors() -> None:
    class Leaky(Connector):
        key = "leaky"
        display_name = "Leaky"

        @classmethod
        def actions(cls) -> list[ActionSpec]:
            return [ActionSpec("go")]

        def execute_action(self, action: str, input: Mapping[str, Any]) -> Any:
            raise KeyError("password=hunter2")

    with pytest.raises(ConnectorError) as caught:
        invoke(Leaky(), "go", {})
    assert caught.value.code == "internal" and caught.value.connector == "leaky"
    assert "hunter2" not in str(caught.value) and "hunter2" not in repr(caught.value)


def test_the_seed_adapter_contract_is_accepted() -> None:
    class Erp(ConnectorAdapter):
        code = "erp"
        name = "ERP"

        @property
        def action_specs(self) -> Mapping[str, ActionSpec]:
            return {"push": ActionSpec("push", {"type": "object", "required": ["id"]})}

        def execute(self, action: str, params: Mapping[str, Any], context: Mapping[str, Any]) -> Any:
            if params["id"] == "boom":
                raise TimeoutError("upstream slow")
            return {"pushed": params["id"], "run": context.get("execution_id")}

    assert invoke(Erp(), "push", {"id": "7"}, context={"execution_id": "r1"}) == {"pushed": "7", "run": "r1"}
    with pytest.raises(ConnectorError) as caught:
        invoke(Erp(), "push", {})
    assert caught.value.code == "invalid_argument" and caught.value.connector == "erp"
    with pytest.raises(ConnectorError) as failed:
        invoke(Erp(), "push", {"id": "boom"})
    assert failed.value.connector == "erp" and failed.value.code == "internal"


def test_invalid_schemas_are_refused() -> None:
    for bad in ({"type": "strnig"}, {"properties": {"a": {"minimum": "x"}}}, {"required": "a"}):
        with pytest.raises(ConfigError):
            check_json_schema(bad)
        with pytest.raises(ConfigError):
            JsonSchema(bad)
    check_json_schema({"type": "object", "properties": {"a": {"type": "string"}}})


def test_echo_connector_and_provider() -> None:
    assert invoke(EchoConnector(), "echo", {"a": [1]}) == {"a": [1]}
    with pytest.raises(ConnectorError) as caught:
        invoke(EchoConnector(), "fail", {"code": "rate_limited", "retryable": True})
    assert caught.value.retryable and caught.value.connector == "echo"
    llm = EchoLLMProvider({"prefix": "> "})
    assert llm.chat([{"role": "system", "content": "be nice"}, {"role": "user", "content": "hi"}]) == "> hi"
    assert llm.count_tokens("a b c") == 3
    assert EchoLLMProvider.validate_config({"prefix": 3})[0]["path"] == "/prefix"


def test_verify_webhook_uses_the_same_helpers() -> None:
    from headrace_example_plugin.connectors import LedgerConnector

    from headrace.webhooks import signed_headers

    secret = "whsec_bGVkZ2VyLXNpZ25pbmcta2V5"
    body = b'{"type": "order.created"}'
    ledger = LedgerConnector({"signing_secrets": ["whsec_b2xkLWxlZGdlcg==", secret]})
    assert ledger.verify_webhook(signed_headers(secret, body), body)
    assert ledger.verify_webhook(signed_headers(secret, body), body, trigger="order.created")
    assert not ledger.verify_webhook(signed_headers(secret, body), body + b" ")
    assert not ledger.verify_webhook(signed_headers(secret, body), body, trigger="no.such.trigger")
    assert not ledger.verify_webhook({}, body)
    assert not LedgerConnector({}).verify_webhook(signed_headers(secret, body), body), "no secret: fails closed"
