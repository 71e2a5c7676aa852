"""Plugin discovery: entry points (the installed example package), settings, bad and conflicting plugins."""

from __future__ import annotations

import importlib
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from headrace import plugins
from headrace.errors import NotFoundError, PluginNotFoundError


@pytest.fixture(autouse=True)
def fresh_registries() -> Iterator[None]:
    for reg in plugins.KINDS.values():
        reg.configure(None)
    yield
    for reg in plugins.KINDS.values():
        reg.configure(None)


def test_entry_points_of_the_example_package_are_discovered() -> None:
    from headrace_example_plugin.backends import ExampleInventory
    from headrace_example_plugin.clients import ExampleQueuedClient
    from headrace_example_plugin.connectors import LedgerConnector, LogAdapter
    from headrace_example_plugin.providers import ShoutProvider
    from headrace_example_plugin.secrets import JsonFileSecretsBackend

    assert plugins.registry("connectors").get("example_ledger") is LedgerConnector
    assert plugins.registry("connectors").get("example_log") is LogAdapter
    assert plugins.registry("secrets").get("example_json") is JsonFileSecretsBackend
    assert plugins.registry("providers").get("example_shout") is ShoutProvider
    assert plugins.registry("backends").get("example_inventory") is ExampleInventory
    assert plugins.registry("integrations").get("example_queued") is ExampleQueuedClient
    info = plugins.registry("connectors").info("example_ledger")
    assert info.origin == "entry_point" and "headrace-example-plugin" in info.target
    # Built-ins are there too.
    assert {"echo"} <= set(plugins.registry("connectors").keys())
    assert {"env", "file"} <= set(plugins.registry("secrets").keys())
    assert "echo" in plugins.registry("providers").keys()


def test_bad_plugins_are_skipped_and_kept_for_inspection() -> None:
    connectors = plugins.registry("connectors")
    problems = {p.key: p for p in connectors.problems}
    assert problems["example_missing"].problem == "import_failed"
    assert "ModuleNotFoundError" in problems["example_missing"].reason
    assert problems["example_missing"].origin == "entry_point"
    assert problems["example_not_a_connector"].problem == "not_subclass"
    assert "example_missing" not in connectors and "example_not_a_connector" not in connectors
    with pytest.raises(PluginNotFoundError, match="import_failed"):
        connectors.get("example_missing")


def test_settings_register_and_override_is_reported(caplog: pytest.LogCaptureFixture) -> None:
    connectors = plugins.registry("connectors")
    connectors.configure(["automate_helpers.Recorder", "automate_helpers.OverridingLedger", "no.such.module.Thing"])
    from automate_helpers import OverridingLedger, Recorder

    assert connectors.get("recorder") is Recorder
    assert connectors.info("recorder").origin == "settings"
    assert connectors.get("example_ledger") is OverridingLedger
    [override] = connectors.overrides
    assert override.key == "example_ledger" and "headrace_example_plugin.connectors:LedgerConnector" in override.reason
    assert connectors.info("example_ledger").overrides is not None
    assert "replaces" in caplog.text
    failed = [p for p in connectors.problems if p.problem == "import_failed" and p.origin == "settings"]
    assert [p.target for p in failed] == ["no.such.module.Thing"]


def test_two_settings_entries_with_one_key_conflict() -> None:
    connectors = plugins.registry("connectors")
    connectors.configure(["automate_helpers.Recorder", "automate_helpers.SecondRecorder"])
    [conflict] = connectors.conflicts
    assert conflict.key == "recorder" and "SecondRecorder" in conflict.reason
    with pytest.raises(PluginNotFoundError, match="conflict"):
        connectors.get("recorder")


def _fake_distribution(root: Path, name: str, entry: str, group: str = "headrace.connectors") -> None:
    info = root / f"{name}-1.0.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text(f"[{group}]\n{entry}\n")


def test_two_entry_points_with_one_key_conflict(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _fake_distribution(tmp_path, "fake_one", "dup_key = automate_helpers:Recorder")
    _fake_distribution(tmp_path, "fake_two", "dup_key = automate_helpers:SecondRecorder")
    monkeypatch.syspath_prepend(str(tmp_path))
    importlib.invalidate_caches()
    connectors = plugins.registry("connectors")
    connectors.reload()
    [conflict] = [c for c in connectors.conflicts if c.key == "dup_key"]
    assert conflict.origin == "entry_point" and "fake_one" in conflict.reason and "fake_two" in conflict.reason
    assert "dup_key" not in connectors
    monkeypatch.setattr(sys, "path", [p for p in sys.path if p != str(tmp_path)])
    importlib.invalidate_caches()
    connectors.reload()
    assert not [c for c in connectors.conflicts if c.key == "dup_key"], "reload reflects removed plugins"


def test_a_backend_entry_point_may_name_a_module_as_the_runner_allows(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from headrace_example_plugin.backends import ExampleInventory

    from headrace.runner import find_backend_class

    entries = "module_backend = headrace_example_plugin.backends\nno_backend = json"
    _fake_distribution(tmp_path, "fake_backends", entries, group="headrace.backends")
    monkeypatch.syspath_prepend(str(tmp_path))
    importlib.invalidate_caches()
    backends = plugins.registry("backends")
    backends.reload()
    try:
        # The registry and the runner apply one rule: a module stands for its Backend subclass.
        assert backends.get("module_backend") is ExampleInventory is find_backend_class("module_backend")
        [problem] = [p for p in backends.problems if p.key == "no_backend"]
        assert problem.problem == "not_subclass" and "defines no Backend subclass" in problem.reason
        assert "no_backend" not in backends
    finally:
        monkeypatch.setattr(sys, "path", [p for p in sys.path if p != str(tmp_path)])
        importlib.invalidate_caches()
        backends.reload()


@pytest.mark.parametrize("kind", sorted(plugins.KINDS))
def test_an_unknown_key_is_the_same_typed_error_in_every_registry(kind: str) -> None:
    with pytest.raises(PluginNotFoundError) as caught:
        plugins.registry(kind).get("no_such_plugin")
    assert isinstance(caught.value, NotFoundError) and isinstance(caught.value, LookupError)
    assert caught.value.kind == kind and caught.value.key == "no_such_plugin"
    assert caught.value.code == "plugin_not_found"


def test_the_report_lists_plugins_and_problems() -> None:
    rows = plugins.report()
    statuses = {(r["kind"], r["key"]): r["status"] for r in rows}
    assert statuses[("connectors", "example_ledger")] == "ok"
    assert statuses[("connectors", "example_missing")] == "import_failed"
    assert statuses[("connectors", "example_not_a_connector")] == "not_subclass"


def test_the_cli_lists_plugins(capsys: pytest.CaptureFixture[str]) -> None:
    import json

    from headrace.cli import main

    assert main(["plugins", "--kind", "connectors", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    by_key = {r["key"]: r for r in rows}
    assert by_key["example_ledger"]["status"] == "ok"
    assert by_key["example_missing"]["status"] == "import_failed"
    assert main(["plugins", "--strict"]) == 1
    text = capsys.readouterr().out
    assert "example_not_a_connector" in text and "not_subclass" in text


def test_integrations_are_one_kind_of_the_one_registry() -> None:
    from headrace_example_plugin.clients import ExampleQueuedClient

    from headrace.errors import ConfigError
    from headrace.integrations import NullIntegrationImpl, Registry, registry

    assert registry is plugins.registry("integrations"), "headrace.integrations has no registry of its own"
    assert registry.get("example_queued") is ExampleQueuedClient and registry.get("") is NullIntegrationImpl
    registry.load_paths(["automate_helpers.ExampleIntegration"])
    assert registry.info("example_integration").origin == "settings"
    rows = {(r["kind"], r["key"]): r for r in plugins.report()}
    assert rows[("integrations", "example_integration")]["status"] == "ok", "headrace plugins lists it"
    with pytest.raises(ConfigError, match="cannot import"):
        registry.load_paths(["no_such_module.Integration"])
    assert [p.target for p in registry.problems if p.problem == "import_failed"] == ["no_such_module.Integration"]
    other = Registry()
    other.register(ExampleQueuedClient, key="queued")
    with pytest.raises(ConfigError, match="taken"):
        other.register(NullIntegrationImpl, key="queued")
    other.reload()
    assert other.get("queued") is ExampleQueuedClient, "classes registered in code survive a reload"
    assert "queued" not in registry, "a fresh Registry is separate from the process-wide one"
