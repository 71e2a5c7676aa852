"""Policy runner faults (issue #9, suite part 4): a backend raising mid-stream, a backend that
never returns (stop still returns in time), and a sink failing transiently, then recovering."""

from __future__ import annotations

import sys
import textwrap
import time
import uuid
from pathlib import Path
from typing import Any

import pytest

from headrace import OutboxStore
from headrace.errors import IngestUnavailable
from headrace.runner import OutboxSink, PolicyManager

BACKEND = """
    import threading
    from headrace import Backend, Metadata

    MODE = {"value": "ok"}
    RELEASE = threading.Event()
    STARTED = threading.Event()

    class Faulty(Backend):
        @classmethod
        def describe(cls):
            return Metadata(name="faulty", app_name="acme", app_version="1.0", description="test")

        def run(self, policy_name, policy, **kwargs):
            STARTED.set()
            for i in range(10):
                if MODE["value"] == "raise" and i == 5:
                    raise RuntimeError("upstream went away mid-stream")
                yield {"name": f"dev-{i}"}
            if MODE["value"] == "hang":
                RELEASE.wait(60)
"""


class FlakySink:
    """Fails its first ``failures`` chunks with IngestUnavailable, then delivers."""

    def __init__(self, failures: int) -> None:
        self.failures = failures
        self.entities: list[Any] = []
        self.recorded: list[str] = []

    def ingest(self, entities: list[Any], *, metadata: dict[str, Any]) -> None:
        if self.failures > 0:
            self.failures -= 1
            raise IngestUnavailable("the pipeline is restarting")
        self.entities.extend(entities)

    def record_failure(self, error: BaseException, *, metadata: dict[str, Any]) -> None:
        self.recorded.append(str(error))


@pytest.fixture
def module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    name = f"rel_faulty_{uuid.uuid4().hex[:10]}"
    (tmp_path / f"{name}.py").write_text(textwrap.dedent(BACKEND))
    monkeypatch.syspath_prepend(str(tmp_path))
    __import__(name)
    loaded = sys.modules[name]
    yield loaded
    loaded.RELEASE.set()


def policies(module: Any) -> dict[str, Any]:
    return {"policies": {"p": {"config": {"package": module.__name__}}}}


def test_a_backend_raising_mid_stream_fails_its_run_and_ships_nothing(module: Any, tmp_path: Path) -> None:
    store = OutboxStore.connect(f"sqlite://{tmp_path / 'outbox.db'}")
    manager = PolicyManager(sink=OutboxSink(store, topic="entities"))
    manager.start_policies(policies(module), schedule=False)
    module.MODE["value"] = "raise"
    failed = manager.run_now("p")
    assert failed.status == "failed" and "upstream went away" in (failed.reason or "")
    assert store.claim_batch("w", 100, topics=["entities"]) == [], "a failed run's chunks are never released"
    module.MODE["value"] = "ok"
    ok = manager.run_now("p")
    assert (ok.status, ok.entity_count) == ("completed", 10)
    [chunk] = store.claim_batch("w", 100, topics=["entities"])
    assert [e["name"] for e in chunk.payload["entities"]] == [f"dev-{i}" for i in range(10)]
    print(f"\nrunner fault, backend raising: run {failed.status} ({failed.reason}); next run {ok.status}")
    assert manager.stop(5)


def test_stop_returns_in_time_while_a_backend_never_returns(module: Any) -> None:
    sink = FlakySink(0)
    manager = PolicyManager(sink=sink)
    module.MODE["value"] = "hang"
    manager.start_policies(policies(module))  # starts a run at once
    assert module.STARTED.wait(10)
    began = time.monotonic()
    idle = manager.stop(1.0)
    elapsed = time.monotonic() - began
    print(f"\nrunner fault, backend never returning: stop(1.0) returned {idle} after {elapsed:.2f} s")
    assert idle is False and elapsed < 5
    with pytest.raises(Exception, match="stopped"):
        manager.run_now("p")


def test_a_sink_failing_transiently_fails_the_run_then_recovers(module: Any) -> None:
    sink = FlakySink(1)
    manager = PolicyManager(sink=sink)
    manager.start_policies(policies(module), schedule=False)
    module.MODE["value"] = "ok"
    first = manager.run_now("p")
    assert first.status == "failed" and "restarting" in (first.reason or "")
    assert sink.recorded and "restarting" in sink.recorded[0], "the sink is told of the failed run"
    second = manager.run_now("p")
    assert (second.status, second.entity_count) == ("completed", 10)
    assert [e["name"] for e in sink.entities] == [f"dev-{i}" for i in range(10)]
    print(f"\nrunner fault, sink failing once: first run {first.status}, second {second.status}")
    assert manager.stop(5)
