"""Runs of orb-worker backends on headrace: protobuf entities serialised once and chunked by the
exact request size, the run id where Diode reads it, all-or-nothing delivery through the
outbox, legacy ``setup()`` on the scheduled instance, and orb-worker's semantics."""

from __future__ import annotations

import base64
import logging
import time
from datetime import datetime, timezone
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from netboxlabs.diode.sdk.diode.v1 import ingester_pb2
from netboxlabs.diode.sdk.ingester import Device, Entity, Site

from headrace.errors import IngestRejected, NotFoundError
from headrace.orb import DiodeSink
from headrace.outbox import OutboxStore
from headrace.runner import NullSink, OutboxSink, PolicyManager


def policies(package: str = "orb_describe_backend", **config: Any) -> dict[str, Any]:
    return {
        "policies": {
            "p": {"config": {"package": package, "custom": "x", **config}, "scope": {"target": "h", "port": 22}}
        }
    }


class RecordingSink:
    """A Python sink taking protobuf chunks, with a fixed envelope."""

    def __init__(self, envelope: int = 100) -> None:
        self.envelope = envelope
        self.chunks: list[tuple[bytes, dict[str, Any]]] = []
        self.finished: list[tuple[str, bool]] = []

    def protobuf_envelope(self, metadata: dict[str, Any]) -> int:
        return self.envelope

    def ingest_protobuf(self, entities: bytes, *, metadata: dict[str, Any]) -> None:
        self.chunks.append((entities, metadata))

    def ingest(self, entities: list[Any], *, metadata: dict[str, Any]) -> None:
        raise AssertionError("protobuf entities must arrive through ingest_protobuf")

    def finish_run(self, run_id: str, completed: bool) -> None:
        self.finished.append((run_id, completed))


def test_diode_entities_reach_diode_with_the_run_id_in_each_entitys_metadata(diode) -> None:
    sink = DiodeSink(diode.target, "client", "secret", app_name_prefix="acme")
    manager = PolicyManager(sink=sink)
    try:
        manager.start_policies(policies(devices=10_000), schedule=False)
        run = manager.run_now("p")
    finally:
        manager.stop()
        sink.close()
    assert (run.status, run.entity_count) == ("completed", 10_000)
    assert len(diode.requests) >= 2, "10 000 devices of ~700 B need two 3 MiB requests"
    for recorded in diode.requests:
        request = ingester_pb2.IngestRequest.FromString(recorded.raw)
        assert len(recorded.raw) <= 3 * 1024 * 1024
        assert request.producer_app_name == "acme/describe_app"
        assert request.producer_app_version == "1.2.3"
        assert dict(request.metadata) == {"policy_name": "p", "worker_backend": "describe_custom", "run_id": run.id}
        assert recorded.metadata["authorization"] == "Bearer test-token"
    entities = diode.entities()
    assert [e.device.name for e in entities] == [f"Device {i}" for i in range(10_000)]
    assert {e.device.metadata["run_id"] for e in entities} == {run.id}
    assert entities[5].device.serial == "SN00000005"


def test_an_expired_token_is_renewed_and_the_chunk_still_delivered(diode) -> None:
    """Chunks go out as bytes on the SDK client's channel; an UNAUTHENTICATED answer hands the
    chunk to the SDK's ``ingest()``, which renews the token and sends it."""
    sink = DiodeSink(diode.target, "client", "secret")
    manager = PolicyManager(sink=sink)
    try:
        manager.start_policies(policies(devices=3), schedule=False)
        diode.fail_next.extend(["unauthenticated", "unauthenticated"])
        run = manager.run_now("p")
    finally:
        manager.stop()
        sink.close()
    assert (run.status, run.entity_count) == ("completed", 3)
    assert diode.token_requests == 2, "one token at connection, one renewed after UNAUTHENTICATED"
    # The raw send, the SDK's send with the old token, the SDK's send with the new one.
    assert [len(r.request.entities) for r in diode.requests] == [3, 3, 3]
    assert [r.metadata["authorization"] for r in diode.requests] == ["Bearer test-token"] * 3
    assert [e.device.metadata["run_id"] for e in diode.requests[2].request.entities] == [run.id] * 3


def test_chunks_are_bounded_by_the_exact_request_size_and_greedy(diode) -> None:
    sink = DiodeSink(diode.target, "client", "secret")
    manager = PolicyManager(sink=sink, chunk_bytes=64 * 1024)
    try:
        manager.start_policies(policies(devices=1200), schedule=False)
        run = manager.run_now("p")
    finally:
        manager.stop()
        sink.close()
    assert run.status == "completed"
    sizes = [len(r.raw) for r in diode.requests]
    assert len(sizes) > 3 and max(sizes) <= 64 * 1024
    # Greedy: each request but the last could not have taken the next request's first entity.
    for this, following in zip(diode.requests, diode.requests[1:], strict=False):
        first = following.request.entities[0].SerializeToString()
        assert len(this.raw) + 1 + len(first) + 2 > 64 * 1024
    assert sum(len(r.request.entities) for r in diode.requests) == 1200


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    sizes=st.lists(st.integers(min_value=0, max_value=3000), min_size=1, max_size=60),
    bound=st.integers(min_value=3300, max_value=20_000),
    envelope=st.integers(min_value=0, max_value=200),
)
def test_property_every_chunk_fits_exactly_and_nothing_is_lost(sizes: list[int], bound: int, envelope: int) -> None:
    import orb_describe_backend as module

    produced = [
        Entity(site=Site(name="s" * size)) if i % 2 else Entity(device=Device(name="d" * size))
        for i, size in enumerate(sizes)
    ]

    class Fixed(module.DescribeBackend):
        def run(self, policy_name: str, policy: Any, **kwargs: Any) -> Any:
            return produced

    module.Fixed = Fixed  # type: ignore[attr-defined]
    sink = RecordingSink(envelope)
    manager = PolicyManager(sink=sink, chunk_bytes=bound)
    try:
        manager.start_policies(policies("orb_describe_backend:Fixed"), schedule=False)
        run = manager.run_now("p")
    finally:
        manager.stop()
    assert run.status == "completed", run.reason
    received = []
    for entities, _metadata in sink.chunks:
        assert envelope + len(entities) <= bound
        request = ingester_pb2.IngestRequest.FromString(entities)
        assert len(request.entities) > 0
        received.extend(request.entities)
    for (this, _), (following, _) in zip(sink.chunks, sink.chunks[1:], strict=False):
        first = ingester_pb2.IngestRequest.FromString(following).entities[0]
        framed = len(first.SerializeToString())
        assert envelope + len(this) + framed + 2 > bound, "a chunk was closed while the next entity fitted"
    assert len(received) == len(produced)
    for original, got in zip(produced, received, strict=True):
        kind = original.WhichOneof("entity")
        assert got.WhichOneof("entity") == kind
        assert getattr(got, kind).name == getattr(original, kind).name
        assert getattr(got, kind).metadata["run_id"] == run.id
        assert "run_id" not in getattr(original, kind).metadata, "the caller's object was mutated"
    assert sink.finished == [(run.id, True)]


def test_an_oversized_entity_fails_the_run_naming_it() -> None:
    sink = RecordingSink(100)
    import orb_describe_backend as module

    class Huge(module.DescribeBackend):
        def run(self, policy_name: str, policy: Any, **kwargs: Any) -> Any:
            return [Entity(device=Device(name="a")), Entity(device=Device(name="x" * 5000))]

    module.Huge = Huge  # type: ignore[attr-defined]
    manager = PolicyManager(sink=sink, chunk_bytes=4096)
    try:
        manager.start_policies(policies("orb_describe_backend:Huge"), schedule=False)
        run = manager.run_now("p")
    finally:
        manager.stop()
    assert run.status == "failed" and "entity 1 " in (run.reason or "")
    assert sink.finished == [(run.id, False)]


def test_a_failed_run_delivers_nothing_through_the_outbox_and_a_completed_one_everything(db_url: str) -> None:
    store = OutboxStore.connect(db_url, max_payload_bytes=8 * 1024 * 1024)
    manager = PolicyManager(sink=OutboxSink(store, topic="diode"), chunk_bytes=64 * 1024)
    try:
        manager.start_policies(policies(devices=2000, generator=True, fail_at=1500), schedule=False)
        failed = manager.run_now("p")
        assert failed.status == "failed" and "backend failed at entity 1500" in (failed.reason or "")
        assert store.claim_batch("w", 100, topics=["diode"]) == []
        assert store.stats()["pending"] == 0, "a failed run's held chunks are deleted"
        manager.delete_policy("p")
        manager.start_policies(policies(devices=2000, generator=True), schedule=False)
        done = manager.run_now("p")
        assert done.status == "completed"
        items = store.claim_batch("w", 100, topics=["diode"])
        assert len(items) == done.metadata["chunk_count"] > 1
        assert {item.trace_id for item in items} == {done.id}
        count = 0
        for item in items:
            payload = item.payload
            assert set(payload) == {"metadata", "entities_protobuf"}
            request = ingester_pb2.IngestRequest.FromString(base64.b64decode(payload["entities_protobuf"]))
            count += len(request.entities)
        assert count == 2000
    finally:
        manager.stop()
        del store


def test_chunks_of_a_run_whose_process_died_are_discarded(tmp_path) -> None:
    url = f"sqlite://{tmp_path / 'held.db'}"
    store = OutboxStore.connect(url, max_payload_bytes=8 * 1024 * 1024)
    sink = OutboxSink(store, topic="diode")
    # A held item as a dead process leaves it: pending, run_at in the year 9000.
    store.enqueue("diode", {"metadata": {}}, run_at=datetime(9000, 1, 1, tzinfo=timezone.utc))
    store.enqueue("diode", {"metadata": {}})
    assert sink.discard_abandoned(0.0) == 1
    assert store.stats()["pending"] == 1
    del store


def test_legacy_backend_is_set_up_on_the_instance_that_is_scheduled() -> None:
    import orb_legacy_backend

    orb_legacy_backend.LegacyBackend.instances.clear()
    sink = RecordingSink(0)
    manager = PolicyManager(sink=sink)
    try:
        manager.start_policies(policies("orb_legacy_backend"), schedule=False)
        run = manager.run_now("p")
    finally:
        manager.stop()
    assert run.status == "completed", run.reason
    assert run.metadata["app_name"] == "legacy_app"
    (instance,) = orb_legacy_backend.LegacyBackend.instances
    assert instance.app_started is True
    assert instance.ingest_sink is not None and callable(instance.ingest_callback)


def test_the_describe_path_constructs_once_with_the_sink() -> None:
    import orb_describe_backend

    orb_describe_backend.DescribeBackend.constructed.clear()
    manager = PolicyManager(sink=NullSink())
    try:
        manager.start_policies(policies(), schedule=False)
        assert manager.run_now("p").status == "completed"
    finally:
        manager.stop()
    (instance,) = orb_describe_backend.DescribeBackend.constructed
    assert instance.ingest_sink is not None


def test_mock_backend_with_unusual_run_signature_runs() -> None:
    manager = PolicyManager(sink=RecordingSink(0))
    try:
        manager.start_policies(policies("orb_mock_backend"), schedule=False)
        run = manager.run_now("p")
    finally:
        manager.stop()
    assert (run.status, run.entity_count, run.metadata["worker_backend"]) == ("completed", 1, "mock_custom")


def test_orb_semantics_users_rely_on(caplog) -> None:
    import orb_describe_backend

    orb_describe_backend.DescribeBackend.constructed.clear()
    sink = RecordingSink(0)
    manager = PolicyManager(sink=sink)
    try:
        manager.start_policies(policies(), schedule=False)
        (backend,) = orb_describe_backend.DescribeBackend.constructed
        # ingest_callback takes entities positionally too; both or neither is a TypeError.
        backend.ingest_callback([Entity(device=Device(name="cb"))])
        backend.ingest_callback(entities=[Entity(device=Device(name="cb2"))])
        with pytest.raises(TypeError):
            backend.ingest_callback([Entity()], error="x")
        with pytest.raises(TypeError):
            backend.ingest_callback()
        # ingest_sink.ingest raises the IngestError subclass after recording the failed run.
        with pytest.raises(IngestRejected):
            backend.ingest_sink.ingest([Entity(device=Device(name="x" * (4 * 1024 * 1024)))])
        runs = manager.runs("p")
        assert runs[0].status == "failed" and runs[0].source == "callback"
        # A failed run logs at ERROR.
        with caplog.at_level(logging.ERROR, logger="headrace.runner"):
            backend.ingest_callback(error=RuntimeError("collector down"))
            # Core log events reach Python logging through a forwarding thread.
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline and not any(
                r.levelno == logging.ERROR and "collector down" in r.getMessage() for r in caplog.records
            ):
                time.sleep(0.05)
        assert any(r.levelno == logging.ERROR and "collector down" in r.getMessage() for r in caplog.records)
        # Deleting an unknown policy: NotFoundError and ValueError, as orb-worker's ValueError.
        with pytest.raises(NotFoundError) as info:
            manager.delete_policy("nope")
        assert isinstance(info.value, ValueError)
    finally:
        manager.stop()
