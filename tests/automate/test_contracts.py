"""The contract base classes: they pass on the built-ins and the example plugin, and fail broken plugins."""

from __future__ import annotations

import textwrap
from typing import ClassVar

import pytest
from headrace_example_plugin.backends import ExampleInventory
from headrace_example_plugin.clients import ExampleQueuedClient
from headrace_example_plugin.connectors import LedgerConnector, LogAdapter
from headrace_example_plugin.providers import ShoutProvider
from headrace_example_plugin.secrets import JsonFileSecretsBackend

from headrace.connectors import EchoConnector
from headrace.providers import EchoLLMProvider
from headrace.secrets import DictSecretsBackend, EnvSecretsBackend, FileSecretsBackend
from headrace.testing import (
    BackendContractTest,
    ConnectorContractTest,
    ProviderContractTest,
    QueuedClientContractTest,
    SecretsBackendContractTest,
)


class TestEchoConnector(ConnectorContractTest):
    adapter_cls = EchoConnector


class TestLedgerConnector(ConnectorContractTest):
    adapter_cls = LedgerConnector


class TestLogAdapter(ConnectorContractTest):
    adapter_cls = LogAdapter


class TestEnvSecrets(SecretsBackendContractTest):
    adapter_cls = EnvSecretsBackend


class TestFileSecrets(SecretsBackendContractTest):
    adapter_cls = FileSecretsBackend


class TestDictSecrets(SecretsBackendContractTest):
    adapter_cls = DictSecretsBackend


class TestJsonFileSecrets(SecretsBackendContractTest):
    adapter_cls = JsonFileSecretsBackend


class TestEchoProvider(ProviderContractTest):
    adapter_cls = EchoLLMProvider


class TestShoutProvider(ProviderContractTest):
    adapter_cls = ShoutProvider


class TestExampleBackend(BackendContractTest):
    adapter_cls = ExampleInventory


class TestExampleQueuedClient(QueuedClientContractTest):
    adapter_cls = ExampleQueuedClient
    payload: ClassVar[dict[str, str]] = {"hello": "world"}


BROKEN = {
    "ConnectorContractTest": (
        "BrokenConnector",
        {
            "test_key_and_name_are_non_empty_strings",
            "test_every_action_is_an_action_spec_with_a_valid_input_schema",
            "test_triggers_use_a_known_verification_method",
            "test_normalize_error_returns_a_safe_connector_error",
            "test_validate_config_reports_ok_and_errors",
            "test_webhooks_fail_closed_without_a_secret",
        },
    ),
    "SecretsBackendContractTest": (
        "LeakySecretsBackend",
        {
            "test_a_missing_secret_raises_the_typed_error",
            "test_never_logs_or_shows_a_value",
            "test_refuses_path_like_keys",
        },
    ),
    "ProviderContractTest": (
        "BrokenProvider",
        {
            "test_config_schema_is_valid_json_schema",
            "test_normalize_error_is_canonical",
            "test_http_statuses_map_to_retryability",
            "test_llm_contract",
        },
    ),
    "BackendContractTest": ("BrokenBackend", {"test_run_yields_serialisable_entities"}),
    "QueuedClientContractTest": ("BrokenQueuedClient", {"test_runs_through_the_outbox"}),
}


@pytest.mark.parametrize("contract", sorted(BROKEN))
def test_each_contract_fails_its_broken_plugin(pytester: pytest.Pytester, contract: str) -> None:
    broken, expected_failures = BROKEN[contract]
    pytester.makeconftest('pytest_plugins = ["headrace.testing.fixtures"]\n')
    pytester.makepyfile(
        test_broken=textwrap.dedent(f"""
        from headrace.testing import {contract}
        from headrace_example_plugin.broken import {broken}

        class TestBroken({contract}):
            adapter_cls = {broken}
    """)
    )
    result = pytester.runpytest_subprocess("-q", "-p", "no:cacheprovider")
    outcomes = result.parseoutcomes()
    failed = {line.split("::")[-1].split(" ")[0] for line in result.outlines if line.startswith("FAILED")}
    assert expected_failures <= failed, f"expected {expected_failures - failed} to fail too:\n{result.stdout.str()}"
    assert outcomes.get("failed", 0) == len(failed)
