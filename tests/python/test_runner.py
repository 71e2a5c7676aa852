"""The policy runner from Python: backends (modern, legacy, orb-worker style), warnings, the
ingest callback and sink, chunking, failures, scheduling rules, configuration and retention."""

from __future__ import annotations

import dataclasses
import json
import logging
import sys
import textwrap
import threading
import types
import uuid
import warnings
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import headrace
from headrace import (
    Backend,
    ConfigError,
    DryRunSink,
    IngestError,
    IngestRejected,
    IngestUnavailable,
    Metadata,
    NullSink,
    OutboxSink,
    OutboxStore,
    Policy,
    PolicyManager,
    RunSource,
    RunStatus,
)
from headrace.runner import Config, construct_backend, find_backend_class, read_metadata

# --------------------------------------------------------------------------- helpers


class ListSink:
    """A Python sink recording every chunk; can be told to raise."""

    def __init__(self) -> None:
        self.chunks: list[tuple[list[Any], dict[str, Any]]] = []
        self.failures: list[tuple[BaseException, dict[str, Any]]] = []
        self.raise_: BaseException | None = None
        self.lock = threading.Lock()

    def ingest(self, entities: list[Any], *, metadata: dict[str, Any]) -> None:
        if self.raise_ is not None:
            raise self.raise_
        with self.lock:
            self.chunks.append((entities, metadata))

    def record_failure(self, error: BaseException, *, metadata: dict[str, Any]) -> None:
        self.failures.append((error, metadata))

    @property
    def entities(self) -> list[Any]:
        return [e for chunk, _ in self.chunks for e in chunk]


@pytest.fixture
def modules(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """Writes backend modules under unique names on sys.path; returns a writer."""
    root = tmp_path / "backends"
    root.mkdir()
    monkeypatch.syspath_prepend(str(root))

    def write(source: str, name: str | None = None) -> str:
        name = name or f"backend_{uuid.uuid4().hex[:10]}"
        (root / f"{name}.py").write_text(textwrap.dedent(source))
        return name

    return write


MODERN = """
    import threading
    from headrace import Backend, Metadata

    CONSTRUCTED = []
    POLICIES = []

    class Devices(Backend):
        @classmethod
        def describe(cls):
            return Metadata(name="devices", app_name="acme", app_version="2.0", description="test")

        def __init__(self, *, ingest_callback=None, **kwargs):
            super().__init__(ingest_callback=ingest_callback, **kwargs)
            CONSTRUCTED.append(self)

        def run(self, policy_name, policy, **kwargs):
            POLICIES.append((policy_name, policy))
            for i in range(policy.config.count):
                yield {"name": f"{policy.scope['prefix']}-{i}", "index": i}
"""


def policies(package: str, name: str = "p", schedule: str | None = None, **config: Any) -> dict:
    cfg: dict[str, Any] = {"package": package, **config}
    if schedule:
        cfg["schedule"] = schedule
    return {"policies": {name: {"config": cfg, "scope": {"prefix": "dev"}}}}


def manager(sink: Any = None, **kwargs: Any) -> PolicyManager:
    return PolicyManager(sink=sink if sink is not None else ListSink(), **kwargs)


# --------------------------------------------------------------------------- modern backends


def test_modern_backend_runs_once_on_start_with_run_id_stamped(modules) -> None:
    name = modules(MODERN)
    sink = ListSink()
    m = manager(sink, chunk_bytes=2048)
    assert m.start_policies(policies(name, count=50)) == ["p"]
    assert m.wait_idle(10)
    runs = m.runs("p")
    assert len(runs) == 1
    run = runs[0]
    assert (run.status, run.source, run.entity_count, run.reason) == ("completed", "schedule", 50, None)
    assert run.status == RunStatus.COMPLETED and run.source == RunSource.SCHEDULE
    assert run.metadata["worker_backend"] == "devices"
    assert run.metadata["chunk_count"] == len(sink.chunks) > 1
    assert [e["name"] for e in sink.entities] == [f"dev-{i}" for i in range(50)]
    assert all(e["metadata"] == {"run_id": run.id} for e in sink.entities)
    for index, (_, meta) in enumerate(sink.chunks):
        assert meta == {
            "policy_name": "p",
            "worker_backend": "devices",
            "app_name": "acme",
            "app_version": "2.0",
            "run_id": run.id,
            "chunk_index": index,
        }
    constructed = sys.modules[name].CONSTRUCTED
    assert len(constructed) == 1, "constructed exactly once"
    assert constructed[0].ingest_callback is not None and constructed[0].ingest_sink is not None
    assert m.stop(5)


def test_run_now_is_manual_and_runs_share_the_policy_object(modules) -> None:
    name = modules(MODERN)
    m = manager()
    m.start_policies(policies(name, count=3, extra_key="x"), schedule=False)
    run = m.run_now("p")
    assert (run.status, run.source, run.entity_count) == ("completed", "manual", 3)
    assert m.runs("p") == [run]
    m.stop()


def test_policy_config_and_scope_attribute_access() -> None:
    # orb-worker's pydantic models (headrace.orb.models): extra config keys are attributes.
    policy = Policy(config=Config(package="pkg", schedule="* * * * *", token="t", depth=3), scope={"site": "a"})
    assert policy.config.package == "pkg"
    assert policy.config.schedule == "* * * * *"
    assert policy.config.token == "t" and policy.config.depth == 3
    assert policy.config.get("missing", 7) == 7
    assert policy.config["package"] == "pkg"
    assert policy.scope == {"site": "a"}
    with pytest.raises(AttributeError):
        _ = policy.config.nope
    from_dict = Policy(config={"package": "pkg", "token": "t"}, scope=None)
    assert from_dict.config.token == "t" and from_dict.config.schedule is None and from_dict.scope is None
    assert from_dict.model_dump() == {
        "config": {"package": "pkg", "schedule": None, "token": "t"},
        "scope": None,
    }
    with pytest.raises(ValueError, match="scope"):
        Policy(config={"package": "pkg"})
    meta = Metadata(name="n", app_name="a", app_version="1")
    assert meta == Metadata("n", "a", "1") and meta.description is None
    with pytest.raises(ValueError):
        Metadata(name="n", app_name="a")


# --------------------------------------------------------------------------- legacy backends


LEGACY = """
    from headrace import Backend, Metadata

    INSTANCES = []

    class Legacy(Backend):
        def __init__(self):
            INSTANCES.append(self)

        def setup(self):
            return Metadata(name="legacy", app_name="old-app", app_version="0.9")

        def run(self, policy_name, policy):
            return [{"name": "a"}, {"name": "b"}]
"""


def test_legacy_backend_loads_through_the_setup_fallback_and_logs_it(modules, caplog) -> None:
    with pytest.warns(DeprecationWarning, match="Legacy overrides the deprecated Backend.setup"):
        name = modules(LEGACY)
        __import__(name)
    m = manager()
    with caplog.at_level(logging.WARNING, logger="headrace.runner"):
        m.start_policies(policies(name), schedule=False)
    fallback = [r for r in caplog.records if r.name == "headrace.runner" and "setup()" in r.getMessage()]
    assert len(fallback) == 1 and "Legacy" in fallback[0].getMessage()
    assert "legacy fallback" in fallback[0].getMessage()
    instances = sys.modules[name].INSTANCES
    # Constructed bare once; setup() ran on the instance that is scheduled (orb-worker 1.16).
    assert len(instances) == 1
    real = instances[0]
    assert callable(real.ingest_callback) and real.ingest_sink is not None
    run = m.run_now("p")
    assert (run.status, run.entity_count, run.metadata["app_name"]) == ("completed", 2, "old-app")
    m.stop()


ORB_WORKER_STYLE = '''
    """An orb-worker backend, as its README shows it; only the Backend import changed."""
    from collections.abc import Iterable

    from headrace import Backend
    from worker.models import Metadata, Policy


    class CustomBackend(Backend):
        def setup(self) -> Metadata:
            return Metadata(
                name="custom_backend",
                app_name="my-app",
                app_version="0.1.0",
                description="A custom backend",
            )

        def run(self, policy_name: str, policy: Policy) -> Iterable[dict]:
            entities = []
            for target in policy.scope.get("targets", []):
                entities.append({"device": {"name": target, "site": {"name": policy.config.site}}})
            return entities
'''


def test_a_backend_written_exactly_like_an_orb_worker_backend_runs(modules, monkeypatch) -> None:
    # orb-worker's own models stay importable beside headrace (here: a stand-in package).
    worker = types.ModuleType("worker")
    models = types.ModuleType("worker.models")

    @dataclasses.dataclass
    class OrbMetadata:
        name: str
        app_name: str
        app_version: str
        description: str | None = None

    models.Metadata = OrbMetadata
    models.Policy = object
    worker.models = models
    monkeypatch.setitem(sys.modules, "worker", worker)
    monkeypatch.setitem(sys.modules, "worker.models", models)
    name = modules(ORB_WORKER_STYLE)
    with pytest.warns(DeprecationWarning, match="CustomBackend overrides the deprecated"):
        __import__(name)
    m = manager()
    doc = {"policies": {"orb": {"config": {"package": name, "site": "lab"}, "scope": {"targets": ["r1", "r2"]}}}}
    m.start_policies(doc, schedule=False)
    run = m.run_now("orb")
    assert (run.status, run.entity_count) == ("completed", 2), run.reason
    assert run.metadata["worker_backend"] == "custom_backend"
    sink = m.sink
    assert sink.entities[0]["device"] == {"name": "r1", "site": {"name": "lab"}}
    assert sink.entities[1]["metadata"]["run_id"] == run.id
    m.stop()


def test_the_three_warnings(modules, caplog) -> None:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")

        class OnlySetup(Backend):
            def setup(self):
                return Metadata("a", "b", "1")

        class InstanceDescribe(Backend):
            def describe(self):
                return Metadata("a", "b", "1")

        class Modern(Backend):
            @classmethod
            def describe(cls):
                return Metadata("a", "b", "1")

            def setup(self):  # kept for old callers: no warning with a describe() classmethod
                return self.describe()

    found = [(w.category, str(w.message)) for w in caught]
    assert len(found) == 2, found
    assert found[0][0] is DeprecationWarning and "OnlySetup" in found[0][1] and "2.0" in found[0][1]
    assert found[1][0] is RuntimeWarning and "InstanceDescribe.describe must be a @classmethod" in found[1][1]
    assert caught[0].filename == __file__, "the warning points at the class definition"
    # PEP 702 marker for type checkers and IDEs, and a runtime warning when the base is called.
    assert "describe()" in Backend.setup.__deprecated__
    with pytest.warns(DeprecationWarning), pytest.raises(NotImplementedError):
        Modern.__mro__[1].setup(Modern())
    # The operator-facing log line when the fallback is used.
    with caplog.at_level(logging.WARNING, logger="headrace.runner"):
        assert read_metadata(OnlySetup) == Metadata("a", "b", "1")
        assert read_metadata(InstanceDescribe) == Metadata("a", "b", "1")
        assert read_metadata(Modern) == Metadata("a", "b", "1")
    messages = [r.getMessage() for r in caplog.records if r.name == "headrace.runner"]
    assert len(messages) == 2
    assert "OnlySetup implements only the deprecated setup()" in messages[0]
    assert "InstanceDescribe: describe is not a classmethod" in messages[1]


def test_base_class_contract() -> None:
    with pytest.raises(NotImplementedError, match="describe"):
        Backend.describe()
    b = Backend(ingest_callback=print, future_option=1)
    assert b.ingest_callback is print and b.ingest_sink is None
    with pytest.raises(NotImplementedError, match="run"):
        b.run("p", Policy(config=Config(package="x"), scope=None))

    class Bare(Backend):
        def __init__(self) -> None:
            self.made = True

        @classmethod
        def describe(cls):
            return Metadata("a", "b", "1")

    instance = construct_backend(Bare, "cb", "sink")
    assert instance.made and instance.ingest_callback == "cb" and instance.ingest_sink == "sink"

    class Nothing(Backend):
        pass

    with pytest.raises(ConfigError, match="neither describe"):
        read_metadata(Nothing)


# --------------------------------------------------------------------------- discovery


def test_discovery_by_module_and_entry_point(modules, tmp_path, monkeypatch) -> None:
    name = modules(
        """
        from headrace import Backend, Metadata
        from headrace.backend import Backend as Same

        class First(Backend):
            @classmethod
            def describe(cls):
                return Metadata("first", "a", "1")

        class Second(First):
            pass
        """
    )
    assert find_backend_class(name).__name__ == "First"
    with pytest.raises(ConfigError, match=r"no_such_module_xyz.*No module named"):
        find_backend_class("no_such_module_xyz")
    empty = modules("X = 1\n")
    with pytest.raises(ConfigError, match="defines no Backend subclass"):
        find_backend_class(empty)
    broken = modules("raise RuntimeError('import-time failure')\n")
    with pytest.raises(ConfigError, match=f"{broken}.*RuntimeError: import-time failure"):
        find_backend_class(broken)

    dist = tmp_path / "eps" / "acme_backends-1.0.dist-info"
    dist.mkdir(parents=True)
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: acme-backends\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text(f"[headrace.backends]\nacme = {name}:Second\n")
    monkeypatch.syspath_prepend(str(tmp_path / "eps"))
    assert find_backend_class("acme").__name__ == "Second"

    m = manager()
    with pytest.raises(ConfigError, match="no_such_module_xyz"):
        m.start_policies(policies("no_such_module_xyz"))


# --------------------------------------------------------------------------- the callback


CALLBACK_DURING_RUN = """
    import threading
    from headrace import Backend, Metadata

    RELEASE = threading.Event()
    RESULTS = []

    class Trigger(Backend):
        @classmethod
        def describe(cls):
            return Metadata(name="trigger", app_name="t", app_version="1")

        def run(self, policy_name, policy, **kwargs):
            yield {"name": "scheduled-0"}

            def api_triggered_sync():
                try:
                    self.ingest_callback(entities=({"name": f"cb-{i}"} for i in range(5)))
                    RESULTS.append("ok")
                except Exception as exc:
                    RESULTS.append(exc)

            t = threading.Thread(target=api_triggered_sync)
            t.start()
            t.join(10)
            RELEASE.wait(10)
            yield {"name": "scheduled-1"}
"""


def test_callback_from_another_thread_during_a_scheduled_run(modules) -> None:
    name = modules(CALLBACK_DURING_RUN)
    module = __import__(name)
    sink = ListSink()
    m = manager(sink)
    m.start_policies(policies(name))
    for _ in range(200):
        if module.RESULTS:
            break
        threading.Event().wait(0.05)
    assert module.RESULTS == ["ok"]
    # The callback run finished while the scheduled run is still in flight.
    assert m.is_running("p")
    runs = m.runs("p")
    assert [(r.source, r.status) for r in runs] == [("callback", "completed"), ("schedule", "running")]
    module.RELEASE.set()
    assert m.wait_idle(10)
    runs = m.runs("p")
    assert {r.source: (r.status, r.entity_count) for r in runs} == {
        "callback": ("completed", 5),
        "schedule": ("completed", 2),
    }
    by_run = {}
    for entity in sink.entities:
        by_run.setdefault(entity["metadata"]["run_id"], []).append(entity["name"])
    callback_run = next(r for r in runs if r.source == "callback")
    assert by_run[callback_run.id] == [f"cb-{i}" for i in range(5)]
    m.stop()


def _callback_for(modules, sink: Any) -> tuple[PolicyManager, Any, Any]:
    name = modules(MODERN)
    m = PolicyManager(sink=sink, chunk_bytes=4096)
    m.start_policies(policies(name, count=1), schedule=False)
    backend = sys.modules[name].CONSTRUCTED[-1]
    return m, backend.ingest_callback, backend.ingest_sink


def test_callback_takes_exactly_one_of_entities_or_error(modules) -> None:
    m, callback, _ = _callback_for(modules, ListSink())
    # orb-worker's contract: both or neither is a TypeError; entities may be positional.
    with pytest.raises(TypeError, match="exactly one"):
        callback()
    with pytest.raises(TypeError, match="exactly one"):
        callback(entities=[{"a": 1}], error=RuntimeError("x"))
    assert m.runs("p") == []
    callback(entities=[])  # empty is still "entities"
    assert [(r.source, r.status, r.entity_count) for r in m.runs("p")] == [("callback", "completed", 0)]
    assert callback(error=TimeoutError("upstream timed out")) is None
    failed = m.runs("p")[0]
    assert (failed.source, failed.status, failed.reason) == (
        "callback",
        "failed",
        "TimeoutError: upstream timed out",
    )
    assert m.sink.failures[-1][1]["run_id"] == failed.id
    m.stop()


class Retryable(Exception):
    retryable = True


class Permanent(Exception):
    retryable = False


@pytest.mark.parametrize(
    ("raised", "expected"),
    [
        (IngestRejected("bad payload"), IngestRejected),
        (IngestUnavailable("pipeline down"), IngestUnavailable),
        (Retryable("try later"), IngestUnavailable),
        (Permanent("never"), IngestRejected),
        (ValueError("unexpected"), IngestError),
        (headrace.StoreUnavailable("db busy"), IngestUnavailable),
    ],
)
def test_callback_maps_sink_failures(modules, raised: BaseException, expected: type) -> None:
    sink = ListSink()
    m, callback, ingest_sink = _callback_for(modules, sink)
    sink.raise_ = raised
    with pytest.raises(expected) as info:
        callback(entities=[{"name": "x"}])
    assert type(info.value) is expected, "unexpected failures are the base IngestError, not a subclass"
    assert str(raised) in str(info.value)
    run = m.runs("p")[0]
    assert (run.source, run.status) == ("callback", "failed") and str(raised) in run.reason
    # The ingest_sink protocol records the same failure, then raises it (as orb-worker 1.16).
    with pytest.raises(expected):
        ingest_sink.ingest([{"name": "y"}])
    failed = m.runs("p")[0]
    assert failed.status == "failed" and str(raised) in failed.reason
    m.stop()


def test_callback_with_a_broken_iterable_raises_ingest_error_with_the_cause(modules) -> None:
    sink = ListSink()
    m, callback, ingest_sink = _callback_for(modules, sink)

    def broken():
        yield {"name": "ok"}
        raise KeyError("missing-field")

    with pytest.raises(IngestError) as info:
        callback(entities=broken())
    assert type(info.value) is IngestError
    assert isinstance(info.value.__cause__, KeyError)
    run = m.runs("p")[0]
    assert run.status == "failed" and "KeyError" in run.reason
    assert run.entity_count == 0, "a partly filled chunk of a failed run is not sent"
    ok = ingest_sink.ingest([{"name": "fine"}])
    assert (ok.status, ok.entity_count, ok.source) == ("completed", 1, "callback")
    failure = ingest_sink.record_failure(RuntimeError("gave up"))
    assert (failure.status, failure.reason) == ("failed", "RuntimeError: gave up")
    m.stop()


# --------------------------------------------------------------------------- entities and chunks


@dataclasses.dataclass
class DataclassDevice:
    name: str
    tags: list[str]


class ModelDevice:
    def __init__(self, name: str) -> None:
        self.name = name

    def model_dump(self, mode: str = "python") -> dict:
        return {"name": self.name, "dumped_as": mode}


class DictDevice:
    def to_dict(self) -> dict:
        return {"name": "to-dict", "metadata": {"source": "api"}}


def test_entity_kinds_and_run_id_without_mutating_the_callers_objects(modules) -> None:
    sink = ListSink()
    m, callback, _ = _callback_for(modules, sink)
    original = {"name": "plain", "metadata": {"owner": "me", "run_id": "stale"}}
    nested = {"name": "nested", "child": DataclassDevice("inner", ["t"])}
    callback(entities=[original, DataclassDevice("dc", ["a"]), ModelDevice("md"), DictDevice(), nested, [1, 2]])
    run = m.runs("p")[0]
    assert run.status == "completed", run.reason
    got = sink.entities
    assert got[0] == {"name": "plain", "metadata": {"owner": "me", "run_id": run.id}}
    assert original == {"name": "plain", "metadata": {"owner": "me", "run_id": "stale"}}
    assert got[1] == {"name": "dc", "tags": ["a"], "metadata": {"run_id": run.id}}
    assert got[2] == {"name": "md", "dumped_as": "json", "metadata": {"run_id": run.id}}
    assert got[3] == {"name": "to-dict", "metadata": {"source": "api", "run_id": run.id}}
    assert got[4]["child"] == {"name": "inner", "tags": ["t"]}
    assert got[5] == [1, 2], "non-object entities are sent as they are"

    with pytest.raises(IngestRejected, match=r"entity 1 .*set"):
        callback(entities=[{"ok": 1}, {"bad": {1, 2}}])
    with pytest.raises(IngestRejected, match="metadata"):
        callback(entities=[{"metadata": "not-a-dict"}])
    m.stop()


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    sizes=st.lists(st.integers(min_value=0, max_value=1500), min_size=1, max_size=120),
    chunk_bytes=st.integers(min_value=1800, max_value=12_000),
)
def test_chunks_never_exceed_chunk_bytes_property(modules, tmp_path, sizes, chunk_bytes) -> None:
    directory = tmp_path / f"chunks-{uuid.uuid4().hex}"
    m = PolicyManager(sink=DryRunSink(directory), chunk_bytes=chunk_bytes)
    name = modules(MODERN)
    m.start_policies(policies(name, count=0), schedule=False)
    callback = sys.modules[name].CONSTRUCTED[-1].ingest_callback
    entities = [{"i": i, "pad": "é" * (n // 2) + "x" * (n - n // 2)} for i, n in enumerate(sizes)]
    try:
        callback(entities=entities)
    except IngestRejected as exc:
        # Only an entity that cannot fit even alone may fail the run, and it is named.
        assert "exceeds chunk_bytes" in str(exc)
        return
    files = sorted(directory.glob("*.json"))
    payloads = [f.read_bytes() for f in files]
    assert all(len(p) <= chunk_bytes for p in payloads)
    decoded = [json.loads(p) for p in payloads]
    assert [d["metadata"]["chunk_index"] for d in decoded] == list(range(len(files)))
    received = [e for d in decoded for e in d["entities"]]
    assert [e["i"] for e in received] == list(range(len(sizes)))
    # Greedy: each chunk was closed only because the next entity did not fit.
    for payload, nxt in zip(payloads[:-1], decoded[1:], strict=True):
        first = json.dumps(nxt["entities"][0], separators=(",", ":"), ensure_ascii=False).encode()
        assert len(payload) + 1 + len(first) > chunk_bytes
    m.stop()


def test_an_oversized_entity_fails_the_run_naming_index_and_size(modules) -> None:
    name = modules(
        """
        from headrace import Backend, Metadata

        class Big(Backend):
            @classmethod
            def describe(cls):
                return Metadata("big", "a", "1")

            def run(self, policy_name, policy, **kwargs):
                yield {"name": "small"}
                yield {"name": "small"}
                yield {"name": "huge", "blob": "x" * 10_000}
        """
    )
    m = manager(chunk_bytes=4096)
    m.start_policies(policies(name), schedule=False)
    run = m.run_now("p")
    assert run.status == "failed"
    assert "entity 2 is 100" in run.reason and "exceeds chunk_bytes (4096 bytes)" in run.reason
    m.stop()


def test_a_raising_backend_or_broken_iterable_is_a_failed_run_not_a_crash(modules) -> None:
    name = modules(
        """
        from headrace import Backend, Metadata

        class Flaky(Backend):
            @classmethod
            def describe(cls):
                return Metadata("flaky", "a", "1")

            def run(self, policy_name, policy, **kwargs):
                mode = policy.config.mode
                if mode == "raise":
                    raise ConnectionError("device unreachable")
                if mode == "not-iterable":
                    return 42
                if mode == "broken":
                    return self.broken()
                return [{"name": "fine"}]

            def broken(self):
                yield {"name": "first"}
                raise ZeroDivisionError("division by zero")
        """
    )
    sink = ListSink()
    m = manager(sink)
    doc = {
        "policies": {
            mode: {"config": {"package": name, "mode": mode}} for mode in ("raise", "not-iterable", "broken", "ok")
        }
    }
    assert m.start_policies(doc, schedule=False) == ["raise", "not-iterable", "broken", "ok"]
    r = m.run_now("raise")
    assert (r.status, r.reason, r.entity_count) == ("failed", "ConnectionError: device unreachable", 0)
    r = m.run_now("not-iterable")
    assert r.status == "failed" and "not iterable" in r.reason
    r = m.run_now("broken")
    assert (r.status, r.entity_count) == ("failed", 0) and "ZeroDivisionError" in r.reason
    assert m.run_now("ok").status == "completed"
    assert len(sink.failures) == 3
    assert isinstance(sink.failures[0][0], IngestError)
    m.stop()


# --------------------------------------------------------------------------- scheduling


BLOCKING = """
    import threading
    from headrace import Backend, Metadata

    GATE = threading.Event()
    STARTED = threading.Event()

    class Slow(Backend):
        @classmethod
        def describe(cls):
            return Metadata("slow", "a", "1")

        def run(self, policy_name, policy, **kwargs):
            STARTED.set()
            GATE.wait(20)
            return [{"name": "done"}]
"""


def test_an_overlapping_tick_is_skipped_and_logged(modules, caplog) -> None:
    name = modules(BLOCKING)
    module = __import__(name)
    m = manager()
    m.start_policies(policies(name, schedule="0 0 1 1 *"))
    assert m._tick("p") == "started"
    assert module.STARTED.wait(10)
    with caplog.at_level(logging.WARNING, logger="headrace.runner"):
        assert m._tick("p") == "skipped"
        assert m._tick("p") == "skipped"
        # The core's log events reach Python's logging through a forwarding thread.
        skipped: list[logging.LogRecord] = []
        for _ in range(100):
            skipped = [r for r in caplog.records if "skipping this schedule tick" in r.getMessage()]
            if len(skipped) == 2:
                break
            threading.Event().wait(0.02)
    assert len(skipped) == 2 and '"p"' in skipped[0].getMessage()
    assert skipped[0].name == "headrace.runner" and skipped[0].levelno == logging.WARNING
    with pytest.raises(ConfigError, match="already running"):
        m.run_now("p")
    module.GATE.set()
    assert m.wait_idle(10)
    runs = m.runs("p")
    assert [(r.source, r.status) for r in runs] == [("schedule", "completed")]
    assert m.stop(5)


def test_stop_waits_for_runs_in_flight_up_to_its_timeout(modules) -> None:
    name = modules(BLOCKING)
    module = __import__(name)
    m = manager()
    m.start_policies(policies(name))
    assert module.STARTED.wait(10)
    assert m.stop(0.2) is False
    with pytest.raises(ConfigError, match="stopped"):
        m.run_now("p")
    module.GATE.set()
    assert m.stop(10) is True
    assert m.runs("p")[0].status == "completed"


def test_ctrl_c_interrupts_a_long_blocking_wait(modules) -> None:
    """stop(), wait_idle() and the store calls wait with the GIL released yet honour Ctrl-C."""
    import _thread
    import signal
    import threading
    import time

    name = modules(BLOCKING)
    module = __import__(name)
    m = manager()
    m.start_policies(policies(name))
    assert module.STARTED.wait(10)
    interrupted = threading.Event()

    def press_ctrl_c() -> None:  # again every 2 s, in case one lands before the wait begins
        while not interrupted.wait(0.3):
            _thread.interrupt_main()
            if interrupted.wait(2):
                return

    # Python's own Ctrl-C handler, also when this runs in the background where the shell
    # started Python with SIGINT ignored (as CI may).
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    started = time.monotonic()
    try:
        with pytest.raises(KeyboardInterrupt):
            threading.Thread(target=press_ctrl_c, daemon=True).start()
            m.wait_idle(30)
    finally:
        interrupted.set()
        signal.signal(signal.SIGINT, previous)
    assert time.monotonic() - started < 10, "the wait ran on instead of raising KeyboardInterrupt"
    module.GATE.set()
    assert m.stop(10) is True


def test_delete_policy(modules) -> None:
    name = modules(MODERN)
    m = manager()
    m.start_policies(policies(name, count=1, schedule="0 0 1 1 *"))
    assert m.policies == ["p"]
    m.delete_policy("p")
    assert m.policies == []
    with pytest.raises(headrace.NotFoundError):
        m.delete_policy("p")
    with pytest.raises(LookupError):
        m.run_now("p")
    m.start_policies(policies(name, count=1))  # the name is free again
    m.stop()


# --------------------------------------------------------------------------- configuration


def test_yaml_with_env_vars(modules, monkeypatch) -> None:
    name = modules(MODERN)
    monkeypatch.setenv("HEADRACE_TEST_COUNT_PREFIX", "from-env")
    m = manager()
    yaml_text = f"""
policies:
  env:
    config:
      package: {name}
      count: 2
      label: "${{HEADRACE_TEST_COUNT_PREFIX}}-${{HEADRACE_UNSET_VAR:-default}}"
    scope:
      prefix: yaml
"""
    assert m.start_policies(yaml_text.encode(), schedule=False) == ["env"]
    run = m.run_now("env")
    assert run.entity_count == 2
    assert m.sink.entities[0]["name"] == "yaml-0"
    policy_name, policy = sys.modules[name].POLICIES[-1]
    assert policy_name == "env"
    assert policy.config.label == "from-env-default"
    assert policy.config.count == 2 and policy.config.schedule is None
    m.stop()


def test_yaml_errors_list_every_bad_field(modules) -> None:
    m = manager()
    bad = """
policies:
  a:
    config:
      schedule: "61 * * * *"
  b:
    config:
      package: "not-a-module"
      secret: ${HEADRACE_DEFINITELY_UNSET}
    extra: 1
  c: 3
"""
    with pytest.raises(ConfigError) as info:
        m.start_policies(bad)
    text = str(info.value)
    for needle in [
        "policies.a.config.package: required",
        "policies.a.config.schedule: invalid cron schedule",
        'policies.b.config.package: "not-a-module" is not a Python module name',
        "policies.b.config.secret: environment variable HEADRACE_DEFINITELY_UNSET is not set",
        "policies.b.extra: unknown key",
        "policies.c: expected a mapping",
    ]:
        assert needle in text, text
    assert isinstance(info.value, ValueError)
    with pytest.raises(ConfigError, match="duplicate"):
        m.start_policies("policies:\n  a:\n    config: {package: x}\n  a:\n    config: {package: y}\n")
    with pytest.raises(ConfigError, match="invalid policies YAML"):
        m.start_policies("policies: [unclosed")
    with pytest.raises(ConfigError):
        m.start_policies(42)
    assert m.policies == []


def test_duplicate_names_and_all_or_nothing_start(modules) -> None:
    name = modules(MODERN)
    m = manager()
    m.start_policies(policies(name, count=1), schedule=False)
    with pytest.raises(ConfigError, match="already running"):
        m.start_policies(policies(name, count=1), schedule=False)
    doc = {
        "policies": {
            "good": {"config": {"package": name, "count": 1}},
            "bad": {"config": {"package": "missing_backend_module_q"}},
        }
    }
    with pytest.raises(ConfigError, match=r'"bad".*missing_backend_module_q'):
        m.start_policies(doc)
    assert m.policies == ["p"]
    assert m.runs("good") == []
    m.stop()


def test_sink_and_settings_validation(sqlite_url) -> None:
    with pytest.raises(ConfigError, match="needs a sink"):
        PolicyManager()
    with pytest.raises(ConfigError, match="no ingest"):
        PolicyManager(sink=object())
    store = OutboxStore.connect(sqlite_url)
    with pytest.raises(ConfigError, match="OutboxSink"):
        PolicyManager(sink=store)
    with pytest.raises(ConfigError, match="chunk_bytes"):
        PolicyManager(sink=NullSink(), chunk_bytes=10)
    with pytest.raises(ConfigError, match="max_runs_per_policy"):
        PolicyManager(sink=NullSink(), max_runs_per_policy=0)
    # The outbox's own payload limit lowers the chunk bound.
    assert PolicyManager(sink=OutboxSink(store)).chunk_bytes == 1024 * 1024
    assert PolicyManager(sink=NullSink()).chunk_bytes == 3 * 1024 * 1024


# --------------------------------------------------------------------------- retention and sinks


def test_run_retention_keeps_the_newest_runs(modules) -> None:
    name = modules(MODERN)
    m = manager(max_runs_per_policy=3)
    m.start_policies(policies(name, count=1), schedule=False)
    ids = [m.run_now("p").id for _ in range(5)]
    assert [r.id for r in m.runs("p")] == ids[::-1][:3]
    m.stop()


def test_outbox_sink_writes_one_item_per_chunk(modules, db_url) -> None:
    name = modules(MODERN)
    store = OutboxStore.connect(db_url, max_payload_bytes=4096)
    m = PolicyManager(sink=OutboxSink(store, topic="inventory"), chunk_bytes=1 << 20)
    assert m.chunk_bytes == 4096
    m.start_policies(policies(name, count=300), schedule=False)
    run = m.run_now("p")
    assert run.status == "completed", run.reason
    items = store.claim_batch("w", limit=1000, topics=["inventory"])
    assert len(items) == run.metadata["chunk_count"] > 1
    total = 0
    for index, item in enumerate(items):
        assert item.payload["metadata"]["chunk_index"] == index
        assert item.payload["metadata"]["run_id"] == run.id == item.trace_id
        assert item.dedupe_key == f"{run.id}:{index}"
        total += len(item.payload["entities"])
    assert total == 300
    m.stop()


def test_null_and_dry_run_sinks(modules, tmp_path) -> None:
    name = modules(MODERN)
    null = NullSink()
    m = PolicyManager(sink=null, chunk_bytes=2048)
    m.start_policies(policies(name, count=100), schedule=False)
    run = m.run_now("p")
    assert (null.entities, null.chunks) == (100, run.metadata["chunk_count"])
    m.stop()
    dry = DryRunSink(tmp_path / "out")
    m = PolicyManager(sink=dry, chunk_bytes=2048)
    m.start_policies(policies(name, count=100), schedule=False)
    run = m.run_now("p")
    files = sorted((tmp_path / "out").glob("*.json"))
    assert len(files) == run.metadata["chunk_count"]
    assert files[0].name == f"p-{run.id}-00000.json"
    m.stop()


def test_runs_are_durable_in_the_state_backend(modules, db_url) -> None:
    from headrace.state import StateBackend

    name = modules(MODERN)
    first = PolicyManager(state=db_url, sink=NullSink(), max_runs_per_policy=2)
    first.start_policies(policies(name, count=2), schedule=False)
    ids = [first.run_now("p").id for _ in range(3)]
    assert first.stop(5)
    # A new manager (as after a restart) sees the same runs, newest first, retention applied.
    state = StateBackend(db_url)
    second = PolicyManager(state=state, sink=NullSink(), max_runs_per_policy=2)
    runs = second.runs("p")
    assert [r.id for r in runs] == ids[::-1][:2]
    assert all((r.status, r.entity_count, r.source) == ("completed", 2, "manual") for r in runs)
    assert runs[0].metadata["chunk_count"] == 1
    # A run is an invocation of task "policy:<name>" in the state backend.
    assert state.get_invocation(ids[-1]).task_id == "policy:p"
    assert [r.id for r in headrace.runner.list_runs(db_url, "p")] == ids[::-1][:2]
    with pytest.raises(ConfigError, match="state="):
        PolicyManager(state=42, sink=NullSink())


def test_policy_run_metrics_are_exported_through_opentelemetry(otel_reader: Any) -> None:
    from headrace.runner import NullSink, PolicyManager

    reader = otel_reader
    manager = PolicyManager(sink=NullSink())
    manager.start_policies(
        {"policies": {"metered": {"config": {"package": f"{__name__}:MeteredBackend"}}}}, schedule=False
    )
    try:
        assert manager.run_now("metered").status == "completed"
    finally:
        manager.stop()
    [(policy, completed, failed, skipped, seconds)] = manager.metrics_snapshot()
    assert (policy, completed, failed, skipped) == ("metered", 1, 0, 0) and seconds >= 0
    points = {
        (metric.name, dict(point.attributes).get("status")): point.value
        for rm in reader.get_metrics_data().resource_metrics
        for sm in rm.scope_metrics
        for metric in sm.metrics
        for point in metric.data.data_points
        if dict(point.attributes).get("policy") == "metered"
    }
    assert points[("headrace.policy.runs", "completed")] == 1
    assert points[("headrace.policy.runs", "failed")] == 0


class MeteredBackend(Backend):
    @classmethod
    def describe(cls) -> Metadata:
        return Metadata(name="metered", app_name="tests", app_version="1")

    def run(self, policy_name: str, policy: Any, **kwargs: Any) -> Any:
        yield {"device": {"name": "d1"}}


LISTS = """
    from headrace import Backend, Metadata

    KEPT = []

    class Lists(Backend):
        @classmethod
        def describe(cls):
            return Metadata(name="lists", app_name="acme", app_version="1.0")

        def run(self, policy_name, policy, **kwargs):
            entities = [{"name": f"dev-{i}"} for i in range(policy.config.count)]
            if policy.config.keep:
                KEPT.append(entities)
            return entities
"""


@pytest.mark.parametrize("keep", [False, True])
def test_a_returned_list_is_sent_whole_and_one_the_backend_kept_is_left_intact(modules, keep: bool) -> None:
    """A list only the run holds is released entity by entity as it is encoded; a list the
    backend still references is only read."""
    import importlib

    name = modules(LISTS)
    sink = ListSink()
    m = manager(sink, chunk_bytes=2048)
    try:
        m.start_policies(policies(name, count=300, keep=keep), schedule=False)
        run = m.run_now("p")
    finally:
        m.stop()
    assert (run.status, run.entity_count) == ("completed", 300)
    assert [e["name"] for e in sink.entities] == [f"dev-{i}" for i in range(300)]
    kept = importlib.import_module(name).KEPT
    if keep:
        assert kept[0] == [{"name": f"dev-{i}"} for i in range(300)]
    else:
        assert kept == []
