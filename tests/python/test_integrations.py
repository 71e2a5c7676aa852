"""Integration descriptors: registry, OAuth clients, queued clients and due-time bridges."""

from __future__ import annotations

import multiprocessing
import sys
import textwrap
from datetime import datetime, timedelta, timezone
from pathlib import Path
from types import SimpleNamespace
from typing import Any, ClassVar

import pytest

from headrace import Backend, Metadata, OutboxStore
from headrace.errors import ConfigError, NotFoundError
from headrace.integrations import (
    BridgeImpl,
    Client,
    IntegrationImpl,
    NullIntegrationImpl,
    QueuedClient,
    Registry,
    bridge_state,
    oauth_clients,
    run_due_bridges,
)


class Mailchimp(Client):
    key = "mailchimp"
    oauth_client = "{vendor}-oauth"


class Hubspot(IntegrationImpl):
    key = "hubspot"


def test_registry_from_dotted_paths_and_bind() -> None:
    registry = Registry()
    registry.load_paths([f"{__name__}.Mailchimp", f"{__name__}.Hubspot"])
    assert registry.keys() == ["hubspot", "mailchimp"]
    record = SimpleNamespace(impl_key="mailchimp", vendor_slug="mc")
    impl = registry.bind(record)
    assert isinstance(impl, Mailchimp) and impl.integration is record
    assert isinstance(registry.bind(SimpleNamespace(impl_key=None)), NullIntegrationImpl)
    with pytest.raises(NotFoundError, match="salesforce"):
        registry.get("salesforce")
    with pytest.raises(ConfigError, match="cannot import"):
        registry.load_paths(["nowhere.Missing"])
    with pytest.raises(ConfigError, match="taken"):
        registry.register(type("Other", (IntegrationImpl,), {"key": "hubspot"}))


def test_registry_from_entry_points(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    package = tmp_path / "acme_integrations"
    package.mkdir()
    (package / "__init__.py").write_text(
        textwrap.dedent(
            """
            from headrace.integrations import BridgeImpl

            class AcmeBridge(BridgeImpl):
                interval_seconds = 60
            """
        )
    )
    dist = tmp_path / "acme_integrations-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: acme-integrations\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text("[headrace.integrations]\nacme = acme_integrations:AcmeBridge\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    registry = Registry()
    registry.load_entry_points()
    assert "acme" in registry
    assert registry.get("acme").__name__ == "AcmeBridge"
    sys.modules.pop("acme_integrations", None)


def test_connect_oauth_client_uses_the_hint_then_the_vendor_slug() -> None:
    oauth_clients.register("mc-oauth", "mailchimp-client")
    oauth_clients.register("hubspot", "hubspot-client")
    oauth_clients.register("disabled", "nope", enabled=False)
    try:
        assert Mailchimp(SimpleNamespace(vendor_slug="mc")).connect_oauth_client("shop") == "mailchimp-client"
        vendor_record = SimpleNamespace(vendor=SimpleNamespace(slug="hubspot"))
        assert Hubspot(vendor_record).connect_oauth_client("shop") == "hubspot-client"
        with pytest.raises(NotFoundError, match="disabled"):
            Hubspot(SimpleNamespace(vendor_slug="disabled")).connect_oauth_client("shop")
        with pytest.raises(NotFoundError, match="no vendor slug"):
            Hubspot(SimpleNamespace()).connect_oauth_client("shop")
    finally:
        for name in ("mc-oauth", "hubspot", "disabled"):
            oauth_clients.unregister(name)


class Ping(QueuedClient):
    key = "ping"
    max_retries = 4

    def run(self, payload: Any) -> Any:
        return payload


def test_queued_client_enqueues_on_its_topic_with_its_attempt_limit(sqlite_url: str) -> None:
    store = OutboxStore.connect(sqlite_url)
    item = store.get(Ping().enqueue({"n": 1}, store=store, dedupe_key="p1"))
    assert (item.topic, item.max_attempts, item.payload, item.dedupe_key) == ("client.ping", 5, {"n": 1}, "p1")
    policy = Ping.retry_policy()
    assert (policy.max_attempts, policy.base_seconds) == (5, 2.0)


def test_queued_client_without_a_store_needs_one(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("HEADRACE_DATABASE_URL", raising=False)
    with pytest.raises(ConfigError, match="HEADRACE_DATABASE_URL"):
        Ping().enqueue({})


class CountingBridge(BridgeImpl):
    key = "counting"
    interval_seconds = 3600
    log_path: ClassVar[str] = ""

    def sync(self) -> int:
        with open(self.log_path, "a") as log:
            log.write("ran\n")
        return 1


class BrokenBridge(BridgeImpl):
    key = "broken"
    interval_seconds = 60

    def sync(self) -> None:
        raise RuntimeError("api down")


def test_bridges_run_when_due_and_advance(db_url: str, tmp_path: Path) -> None:
    store = OutboxStore.connect(db_url)
    CountingBridge.log_path = str(tmp_path / "runs.log")
    bridge = CountingBridge(SimpleNamespace(pk=1))
    now = datetime.now(timezone.utc)
    [run] = run_due_bridges([bridge], store=store, now=now)
    assert run.ok and run.result == 1 and run.next_sync_at == now + timedelta(hours=1)
    assert run_due_bridges([bridge], store=store, now=now + timedelta(minutes=59)) == []
    state = bridge_state(store, bridge)
    assert state is not None and state.next_sync_at == now + timedelta(hours=1) and state.runs == 1
    assert [r.ok for r in run_due_bridges([bridge], store=store, now=now + timedelta(hours=1))] == [True]
    assert (tmp_path / "runs.log").read_text().count("ran") == 2


def test_a_failing_bridge_is_recorded_and_still_advanced(sqlite_url: str) -> None:
    store = OutboxStore.connect(sqlite_url)
    bridge = BrokenBridge(SimpleNamespace(pk=9))
    now = datetime.now(timezone.utc)
    [run] = run_due_bridges([bridge], store=store, now=now)
    assert not run.ok and run.error == "RuntimeError: api down"
    state = bridge_state(store, bridge)
    assert state is not None and state.last_error == "RuntimeError: api down"
    assert state.next_sync_at == now + timedelta(seconds=60)


def _run_bridges_in_process(url: str, log_path: str, start_at: float) -> int:
    import time

    CountingBridge.log_path = log_path
    while time.time() < start_at:
        time.sleep(0.001)
    return len(run_due_bridges([CountingBridge(SimpleNamespace(pk=1))], store=OutboxStore.connect(url)))


def test_two_processes_at_the_same_moment_run_a_bridge_once(db_url: str, tmp_path: Path) -> None:
    import time

    OutboxStore.connect(db_url)  # migrate first, so both processes race only on the bridge
    log_path = str(tmp_path / "runs.log")
    ctx = multiprocessing.get_context("spawn")
    start_at = time.time() + 2.0
    with ctx.Pool(2) as pool:
        ran = pool.starmap(_run_bridges_in_process, [(db_url, log_path, start_at)] * 2)
    assert sorted(ran) == [0, 1]
    assert Path(log_path).read_text().count("ran") == 1


class Catalog(Backend):
    @classmethod
    def describe(cls) -> Metadata:
        return Metadata(name="catalog", app_name="shop", app_version="1.0")

    def run(self, policy_name: str, policy: Any, **kwargs: Any) -> Any:
        for n in range(policy.config.count):
            yield {"product": {"sku": f"{policy.scope['prefix']}-{n}"}}


def test_a_bridge_can_wrap_a_policy_runner_backend(db_url: str) -> None:
    class CatalogBridge(BridgeImpl):
        key = "catalog"
        interval_seconds = 60
        backend = Catalog
        backend_config: ClassVar[dict[str, Any]] = {"count": 3}
        backend_scope: ClassVar[dict[str, Any]] = {"prefix": "sku"}

    store = OutboxStore.connect(db_url)
    [run] = run_due_bridges([CatalogBridge(SimpleNamespace(pk=5))], store=store)
    assert run.ok and run.result.status == "completed" and run.result.entity_count == 3
    [chunk] = store.list(topic="headrace.entities")
    assert [e["product"]["sku"] for e in chunk.payload["entities"]] == ["sku-0", "sku-1", "sku-2"]
    assert chunk.payload["metadata"]["policy_name"] == "catalog:5"
    assert all(e["metadata"]["run_id"] == run.result.id for e in chunk.payload["entities"])


def test_workers_leave_bridge_schedules_alone(sqlite_url: str) -> None:
    from headrace.worker import OutboxWorker

    store = OutboxStore.connect(sqlite_url)
    BrokenBridge.interval_seconds = 60
    run_due_bridges(
        [BrokenBridge(SimpleNamespace(pk=1))], store=store, now=datetime.now(timezone.utc) - timedelta(hours=1)
    )
    report = OutboxWorker(store, {"t": print}).run_until_empty()
    assert report.processed == 0, "the due bridge schedule was not dispatched (nor dead-lettered)"
    assert store.list(topic="headrace.bridge")[0].status == "pending"


class NightlyBridge(BridgeImpl):
    key = "nightly"
    schedule = "30 2 * * *"

    def sync(self) -> str:
        return "synced"


def test_a_cron_bridge_advances_to_its_next_fire_time(sqlite_url: str) -> None:
    store = OutboxStore.connect(sqlite_url)
    bridge = NightlyBridge(SimpleNamespace(pk=1))
    now = datetime(2030, 5, 1, 12, 0, tzinfo=timezone.utc)
    [run] = run_due_bridges([bridge], store=store, now=now)
    assert run.result == "synced" and run.next_sync_at == datetime(2030, 5, 2, 2, 30, tzinfo=timezone.utc)
    assert run_due_bridges([bridge], store=store, now=datetime(2030, 5, 2, 2, 29, tzinfo=timezone.utc)) == []
    [again] = run_due_bridges([bridge], store=store, now=datetime(2030, 5, 2, 2, 30, tzinfo=timezone.utc))
    assert again.next_sync_at == datetime(2030, 5, 3, 2, 30, tzinfo=timezone.utc)
    with pytest.raises(ConfigError, match="cron"):
        type("Bad", (BridgeImpl,), {"schedule": "every day"})().next_sync_after(now)
