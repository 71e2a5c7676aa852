"""DiodeSink's dry-run output is the text the SDK's own ``DiodeDryRunClient`` writes for the same
chunk, byte for byte (the request id aside), whether the core printed it or the chunk fell back
to the SDK's printer."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from google.protobuf.struct_pb2 import Struct
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from netboxlabs.diode.sdk.client import DiodeDryRunClient
from netboxlabs.diode.sdk.diode.v1 import ingester_pb2

from headrace.orb import DiodeSink
from headrace.orb import diode as diode_module

METADATA = {"policy_name": "p", "worker_backend": "describe_custom", "run_id": "r-1", "app_name": "app"}
ID = re.compile(r'\n  "id": "[0-9a-f-]{36}",\n')


def sdk_text(entities: list[Any], directory: Path) -> str:
    client = DiodeDryRunClient(app_name="app", output_dir=str(directory))
    client.ingest(entities=entities, metadata=DiodeSink.request_metadata(METADATA))
    (path,) = directory.iterdir()
    return path.read_text()


def sink_text(entities: list[Any], directory: Path) -> str:
    sink = DiodeSink(None, dry_run=True, dry_run_output_dir=str(directory))
    body = ingester_pb2.IngestRequest(entities=entities).SerializeToString()
    sink.ingest_protobuf(body, metadata=METADATA)
    (path,) = directory.iterdir()
    return path.read_text()


def same_output(entities: list[Any], tmp: Path) -> tuple[str, str]:
    (tmp / "sdk").mkdir()
    (tmp / "sink").mkdir()
    expected = ID.sub("\n  ID\n", sdk_text(entities, tmp / "sdk"), count=1)
    actual = ID.sub("\n  ID\n", sink_text(entities, tmp / "sink"), count=1)
    return expected, actual


texts = st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=12)
floats = st.floats(allow_nan=True, allow_infinity=True) | st.sampled_from([0.0, -0.0, 1e16, 1e-5, 0.1, 1e15, 2.5])
ints = st.integers(-(2**63), 2**63 - 1)


@st.composite
def entities(draw: Any) -> Any:
    device = ingester_pb2.Device(name=draw(texts))
    if draw(st.booleans()):
        device.serial = draw(texts)
    if draw(st.booleans()):
        device.latitude = draw(floats)
    if draw(st.booleans()):
        device.vc_position = draw(ints)
    if draw(st.booleans()):
        device.site.name = draw(texts)
        device.site.slug = draw(texts)
    if draw(st.booleans()):
        device.device_type.model = draw(texts)
        device.device_type.manufacturer.name = draw(texts)
    for name in draw(st.lists(texts, max_size=3)):
        device.tags.add(name=name)
    keys = draw(st.lists(texts, max_size=2, unique=True))
    for key in keys:
        value = draw(st.sampled_from(["text", "integer", "decimal", "boolean", "datetime", "multiple_selection"]))
        cf = device.custom_fields[key]
        if value == "text":
            cf.text = draw(texts)
        elif value == "integer":
            cf.integer = draw(ints)
        elif value == "decimal":
            cf.decimal = draw(floats)
        elif value == "boolean":
            cf.boolean = draw(st.booleans())
        elif value == "datetime":
            cf.datetime.seconds = draw(st.integers(-62135596800, 253402300799))
            cf.datetime.nanos = draw(st.sampled_from([0, 5_000_000, 7_000, 123_456_789]))
        else:
            cf.multiple_selection.extend(draw(st.lists(texts, max_size=2)))
    metadata: dict[str, Any] = draw(
        st.dictionaries(
            texts,
            st.none()
            | st.booleans()
            | texts
            | st.floats(allow_nan=False, allow_infinity=False)
            | st.lists(st.integers(-1000, 1000), max_size=2),
            max_size=2,
        )
    )
    if metadata or draw(st.booleans()):
        structure = Struct()
        structure.update(metadata)
        device.metadata.CopyFrom(structure)
    entity = ingester_pb2.Entity(device=device)
    if draw(st.booleans()):
        entity.timestamp.seconds = draw(st.integers(0, 4_000_000_000))
        entity.timestamp.nanos = draw(st.sampled_from([0, 1_000_000, 1_000, 1]))
    return entity


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(chunk=st.lists(entities(), min_size=1, max_size=3))
def test_property_the_dry_run_prints_what_the_sdk_prints(chunk: list[Any], tmp_path_factory: Any) -> None:
    expected, actual = same_output(chunk, tmp_path_factory.mktemp("dry"))
    assert actual == expected


def test_the_core_prints_a_device_chunk_and_the_run_id_placement(tmp_path: Path, monkeypatch: Any) -> None:
    """The common case is printed by the core (not the SDK fallback) and keeps the appended
    run id metadata, merged as a parser merges it."""
    device = ingester_pb2.Device(name="Device é\n1", serial="SN1", tags=[ingester_pb2.Tag(name="t")])
    device.site.name = "Site"
    plain = ingester_pb2.Entity(device=device)
    stamped = ingester_pb2.Entity()
    stamped.CopyFrom(plain)
    stamped.device.metadata.update({"run_id": "r-1"})
    calls: list[int] = []
    original = diode_module._dry_run_write
    monkeypatch.setattr(diode_module, "_dry_run_write", lambda c, t: (calls.append(1), original(c, t)))
    (tmp_path / "sdk").mkdir()
    (tmp_path / "sink").mkdir()
    expected = ID.sub("\n  ID\n", sdk_text([stamped], tmp_path / "sdk"), count=1)
    # The bytes as the runner produces them: the entity's own, the run id metadata appended.
    raw = plain.SerializeToString()
    suffix = ingester_pb2.Device(metadata=stamped.device.metadata).SerializeToString()
    inner = device.SerializeToString() + suffix
    entity = bytes([0xB2, 0x01]) + _varint(len(inner)) + inner
    assert ingester_pb2.Entity.FromString(entity) == stamped and raw != entity
    body = bytes([0x12]) + _varint(len(entity)) + entity
    sink = DiodeSink(None, dry_run=True, dry_run_output_dir=str(tmp_path / "sink"))
    sink.ingest_protobuf(body, metadata=METADATA)
    (path,) = (tmp_path / "sink").iterdir()
    assert ID.sub("\n  ID\n", path.read_text(), count=1) == expected
    assert calls == [1]


def test_a_chunk_the_core_cannot_print_exactly_falls_back_to_the_sdk(tmp_path: Path) -> None:
    device = ingester_pb2.Device(name="d")
    device.metadata.update({"a": 1, "b": "two", "c": True})  # printed in protobuf's hash order
    expected, actual = same_output([ingester_pb2.Entity(device=device)], tmp_path)
    assert actual == expected
    assert (
        diode_module._entity_printer().entities_json(
            ingester_pb2.IngestRequest(entities=[ingester_pb2.Entity(device=device)]).SerializeToString(), 1
        )
        is None
    )


def _varint(value: int) -> bytes:
    out = bytearray()
    while value >= 0x80:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)
