"""Regression tests of defects 6, 8, 9 and 13 of issue #9 (one handler poisoning its batch,
the ingest callback mis-reading its input, one bad bridge sticking the others, the smaller
ones), through the Python API on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import sys
import textwrap
import threading
import time
import uuid
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path
from types import SimpleNamespace
from typing import Any, ClassVar

import pytest

from headrace import OutboxStore
from headrace.errors import ConfigError
from headrace.integrations import BridgeImpl, run_due_bridges
from headrace.outbox import RetryPolicy
from headrace.runner import PolicyManager
from headrace.state import StateBackend
from headrace.worker import OutboxWorker

from .fixtures import fresh_pg_url


@pytest.fixture(params=["sqlite", "postgres"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    yield f"sqlite://{tmp_path / 'headrace.db'}" if request.param == "sqlite" else fresh_pg_url()


# -- defect 6: one handler poisons its batch ---------------------------------------------------


QUICK_RETRY = RetryPolicy(base_seconds=0.01, max_seconds=0.01, jitter=0.0)


class StrRaises(Exception):
    def __str__(self) -> str:
        raise RuntimeError("str() of this exception raises")


@pytest.mark.parametrize("interrupt", [KeyboardInterrupt, SystemExit])
def test_an_interrupting_handler_settles_its_batch_and_stops_the_worker(
    db_url: str, interrupt: type[BaseException]
) -> None:
    """A KeyboardInterrupt/SystemExit from one handler re-ran the items that had already
    succeeded and dead-lettered items never handed to a handler."""
    store = OutboxStore.connect(db_url, retry=QUICK_RETRY)
    ids = [store.enqueue("t", {"n": n}) for n in range(5)]
    calls: list[int] = []

    def handle(item: Any) -> None:
        calls.append(item.id)
        if item.id == ids[2] and calls.count(item.id) == 1:
            raise interrupt()

    worker = OutboxWorker(store, {"t": handle}, batch_size=5, reaper_interval=None)
    with pytest.raises(interrupt):
        worker.run_until_empty()
    assert calls == ids[:3], "the items after the interrupted one are never handed over"
    assert [store.get(i).status for i in ids] == ["completed", "completed", "pending", "pending", "pending"]
    interrupted = store.get(ids[2])
    assert interrupted.attempts == 1 and interrupt.__name__ in (interrupted.last_error or "")
    assert [store.get(i).attempts for i in ids[3:]] == [0, 0], "never started: not counted as attempts"
    # The next worker finishes the rest; nothing that succeeded runs twice.
    time.sleep(0.05)  # the interrupted item's backoff
    OutboxWorker(store, {"t": handle}, batch_size=5, reaper_interval=None).run_until_empty()
    assert sorted(calls) == sorted([*ids, ids[2]])
    assert store.stats()["completed"] == 5


def test_an_exception_whose_str_raises_fails_only_its_item(db_url: str) -> None:
    store = OutboxStore.connect(db_url)
    state = StateBackend(db_url)
    ids = [store.enqueue("t", {"n": n}) for n in range(4)]
    calls: list[int] = []

    def handle(item: Any) -> None:
        calls.append(item.id)
        if item.id == ids[1]:
            raise StrRaises()

    report = OutboxWorker(store, {"t": handle}, batch_size=4, state=state, reaper_interval=None).run_until_empty(
        timeout=10
    )
    state.wait_for_all_async_operations()
    assert calls.count(ids[0]) == calls.count(ids[2]) == calls.count(ids[3]) == 1
    assert [store.get(i).status for i in (ids[0], ids[2], ids[3])] == ["completed"] * 3
    failed = store.get(ids[1])
    assert failed.status == "pending" and "StrRaises" in (failed.last_error or "")
    assert report.completed == 3 and report.retried == 1
    state.close()


def test_an_async_handler_interrupting_keeps_the_other_results(db_url: str) -> None:
    store = OutboxStore.connect(db_url, retry=QUICK_RETRY)
    ids = [store.enqueue("t", {"n": n}) for n in range(3)]
    calls: list[int] = []

    async def handle(item: Any) -> None:
        calls.append(item.id)
        await asyncio.sleep(0)
        if item.id == ids[1] and calls.count(item.id) == 1:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        OutboxWorker(store, {"t": handle}, batch_size=3, reaper_interval=None).run_until_empty()
    assert [store.get(i).status for i in ids] == ["completed", "pending", "completed"]
    time.sleep(0.05)
    OutboxWorker(store, {"t": handle}, batch_size=3, reaper_interval=None).run_until_empty()
    assert sorted(calls) == sorted([*ids, ids[1]])


# -- defect 8: ingest_callback mis-reads its input ---------------------------------------------

BACKEND = """
    from headrace import Backend, Metadata

    CONSTRUCTED = []
    RETURNS = {"value": []}

    class Devices(Backend):
        @classmethod
        def describe(cls):
            return Metadata(name="devices", app_name="acme", app_version="1.0", description="test")

        def __init__(self, *, ingest_callback=None, **kwargs):
            super().__init__(ingest_callback=ingest_callback, **kwargs)
            CONSTRUCTED.append(self)

        def run(self, policy_name, policy, **kwargs):
            return RETURNS["value"]
"""


class ListSink:
    def __init__(self) -> None:
        self.entities: list[Any] = []

    def ingest(self, entities: list[Any], *, metadata: dict[str, Any]) -> None:
        self.entities.extend(entities)

    def record_failure(self, error: BaseException, *, metadata: dict[str, Any]) -> None:
        pass


@pytest.fixture
def backend_module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    name = f"rel_backend_{uuid.uuid4().hex[:10]}"
    (tmp_path / f"{name}.py").write_text(textwrap.dedent(BACKEND))
    monkeypatch.syspath_prepend(str(tmp_path))
    __import__(name)
    return sys.modules[name]


def _started(module: Any) -> tuple[PolicyManager, ListSink, Any]:
    sink = ListSink()
    manager = PolicyManager(sink=sink)
    manager.start_policies({"policies": {"p": {"config": {"package": module.__name__}}}}, schedule=False)
    return manager, sink, module.CONSTRUCTED[-1]


@pytest.mark.parametrize(
    "entities,kind",
    [({"name": "router"}, "mapping"), ("router", "str"), (b"\x08\x01", "bytes"), (bytearray(b"ab"), "bytes")],
)
def test_the_ingest_callback_refuses_a_single_entity_instead_of_iterating_it(
    backend_module: Any, entities: Any, kind: str
) -> None:
    """A dict was iterated as its keys, bytes became integers and a string one entity per
    character."""
    manager, sink, backend = _started(backend_module)
    for call in (lambda: backend.ingest_callback(entities), lambda: backend.ingest_sink.ingest(entities)):
        with pytest.raises(ConfigError, match=kind) as raised:
            call()
        assert "iterable of entities" in str(raised.value)
    assert manager.runs("p") == [], "nothing was recorded"
    assert sink.entities == []
    backend.ingest_callback([{"name": "router"}])
    assert sink.entities[0]["name"] == "router"
    manager.stop(5)


def test_a_backend_returning_a_dict_fails_its_run_instead_of_shipping_its_keys(backend_module: Any) -> None:
    manager, sink, _ = _started(backend_module)
    backend_module.RETURNS["value"] = {"name": "router", "site": "x"}
    run = manager.run_now("p")
    assert run.status == "failed" and "mapping" in (run.reason or ""), run.reason
    assert sink.entities == []
    manager.stop(5)


def test_the_ingest_callback_ships_nothing_after_the_manager_stopped(backend_module: Any) -> None:
    manager, sink, backend = _started(backend_module)
    backend.ingest_callback([{"name": "before"}])
    manager.stop(5)
    for call in (
        lambda: backend.ingest_callback([{"name": "after"}]),
        lambda: backend.ingest_sink.ingest([{"name": "after"}]),
        lambda: backend.ingest_callback(error=RuntimeError("late")),
    ):
        with pytest.raises(ConfigError, match="stopped"):
            call()
    assert backend.ingest_sink.record_failure(RuntimeError("late")) is None
    assert [e["name"] for e in sink.entities] == ["before"]
    assert len(manager.runs("p")) == 1


def test_the_ingest_callback_of_a_deleted_policy_ships_nothing(backend_module: Any) -> None:
    manager, sink, backend = _started(backend_module)
    manager.delete_policy("p")
    with pytest.raises(ConfigError, match="stopped"):
        backend.ingest_callback([{"name": "after"}])
    assert sink.entities == []
    manager.stop(5)


# -- defect 9: one bad bridge sticks the good ones ---------------------------------------------


class GoodBridge(BridgeImpl):
    key = "rel-good"
    interval_seconds = 60
    ran: ClassVar[list[int]] = []

    def sync(self) -> int:
        self.ran.append(1)
        return 1


class BadCronBridge(GoodBridge):
    key = "rel-bad-cron"
    interval_seconds = None
    schedule = "not a cron"


class HugeIntervalBridge(GoodBridge):
    key = "rel-huge"
    interval_seconds = 1e300


class NeverFiresBridge(GoodBridge):
    key = "rel-never"
    interval_seconds = None
    schedule = "0 0 31 2 *"


def test_one_bad_bridge_does_not_leave_the_good_ones_processing(db_url: str) -> None:
    store = OutboxStore.connect(db_url)
    GoodBridge.ran.clear()
    bridges = [
        BadCronBridge(SimpleNamespace(pk=1)),
        GoodBridge(SimpleNamespace(pk=2)),
        HugeIntervalBridge(SimpleNamespace(pk=3)),
        NeverFiresBridge(SimpleNamespace(pk=4)),
        GoodBridge(SimpleNamespace(pk=5)),
    ]
    runs = {run.bridge_key: run for run in run_due_bridges(bridges, store=store)}
    assert len(GoodBridge.ran) == 2, "the good bridges ran"
    assert runs["rel-good:2"].ok and runs["rel-good:5"].ok
    for key, names in (("rel-bad-cron:1", "cron"), ("rel-huge:3", "interval_seconds"), ("rel-never:4", "never")):
        assert not runs[key].ok and runs[key].next_sync_at is None
        assert names in (runs[key].error or "").lower(), runs[key].error
    assert store.stats()["processing"] == 0, "nothing is left claimed"
    assert store.stats()["pending"] == 2, "only the good bridges are scheduled"


def test_a_bridge_interrupted_puts_the_claimed_bridges_back(db_url: str) -> None:
    class Interrupting(GoodBridge):
        key = "rel-interrupting"

        def sync(self) -> int:
            raise KeyboardInterrupt

    store = OutboxStore.connect(db_url)
    with pytest.raises(KeyboardInterrupt):
        run_due_bridges([Interrupting(SimpleNamespace(pk=1)), GoodBridge(SimpleNamespace(pk=9))], store=store)
    assert store.stats()["processing"] == 0


# -- defect 13: the smaller ones -----------------------------------------------------------------


def test_run_at_given_a_unix_timestamp_is_refused_not_read_as_decades_ahead(db_url: str) -> None:
    store = OutboxStore.connect(db_url)
    for call in (
        lambda: store.enqueue("t", 1, run_at=time.time()),
        lambda: store.enqueue_many([{"topic": "t", "payload": 1, "run_at": time.time()}]),
        lambda: store.claim_batch("w", 1, due_by=time.time()),
    ):
        with pytest.raises(ConfigError, match="Unix timestamp") as raised:
            call()
        assert "datetime" in str(raised.value)
    assert store.stats()["pending"] == 0
    # The rule: a number is seconds from now; an aware datetime is a point in time.
    soon = store.get(store.enqueue("t", 1, run_at=60))
    at = datetime.now(timezone.utc) + timedelta(hours=1)
    later = store.get(store.enqueue("t", 2, run_at=at))
    assert timedelta(seconds=50) < soon.run_at - datetime.now(timezone.utc) <= timedelta(seconds=60)
    assert abs(later.run_at - at) < timedelta(milliseconds=1)


def test_claim_iterator_close_stops_the_iteration(db_url: str) -> None:
    store = OutboxStore.connect(db_url)
    for n in range(6):
        store.enqueue("t", n)
    claims = store.iter_claims("w", 2)
    first = next(claims)
    assert len(first) == 2
    assert claims.close() == 2, "the prefetched batch goes back"
    assert list(claims) == [], "no batch after close()"
    assert claims.close() == 0
    assert store.stats() == {"pending": 4, "processing": 2, "completed": 0, "failed": 0}


def test_claim_iterator_closed_from_another_thread_claims_no_more(db_url: str) -> None:
    store = OutboxStore.connect(db_url)
    for n in range(20):
        store.enqueue("t", n)
    claims = store.iter_claims("w", 2)
    seen = 0
    for batch in claims:
        seen += len(batch)
        closer = threading.Thread(target=claims.close)
        closer.start()
        closer.join()
    assert seen == 2
    assert store.stats()["processing"] == 2


def test_telemetry_probe_survives_a_failing_import_and_concurrent_workers(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """``telemetry.available()`` intermittently raised importlib's KeyError under repeated
    worker construction: the probe now runs once, under a lock, and a broken installation
    counts as absent."""
    from headrace import telemetry

    class Broken:
        def find_spec(self, name: str, path: Any = None, target: Any = None) -> None:
            if name.startswith("opentelemetry"):
                raise KeyError(name)

    monkeypatch.setattr(telemetry, "_available", None)
    for name in [m for m in sys.modules if m.startswith("opentelemetry")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setattr(sys, "meta_path", [Broken(), *sys.meta_path])
    store = OutboxStore.connect(f"sqlite://{tmp_path / 't.db'}")
    errors: list[BaseException] = []

    def build() -> None:
        try:
            for _ in range(20):
                OutboxWorker(store, {"t": lambda item: None}, reaper_interval=None)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=build) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert telemetry.available() is False


# -- defect 1: crash at exit after async calls ------------------------------------------------

EXIT_SCRIPT = """
import asyncio, sys
from headrace import OutboxStore, _core

async def main(url):
    store = OutboxStore.connect(url)
    cancelled = 0
    for i in range(200):
        try:
            await asyncio.wait_for(store.aenqueue("t", {"i": i}), timeout=0.0001)
        except (asyncio.TimeoutError, TimeoutError):
            cancelled += 1
    try:
        await _core._panic_in_async_call()
    except Exception as exc:
        print("panic raised", type(exc).__name__, exc.retryable)
    print("cancelled", cancelled)

asyncio.run(main(sys.argv[1]))
print("done", flush=True)
"""


@pytest.mark.parametrize("engine", ["sqlite", "postgres"])
def test_cancelled_and_panicking_async_calls_never_crash_the_exit(engine: str, tmp_path: Path) -> None:
    """An aenqueue cancelled by asyncio.wait_for made the interpreter segfault or abort at exit
    (3 runs in 5); an async call that panicked did so every time. Cancelling stops the wait;
    the call itself completes whole in the background (drained at exit)."""
    import subprocess

    url = f"sqlite://{tmp_path / 'exit.db'}" if engine == "sqlite" else fresh_pg_url()
    OutboxStore.connect(url).close()
    runs = 3 if engine == "sqlite" else 2
    for run in range(runs):
        done = subprocess.run(
            [sys.executable, "-c", EXIT_SCRIPT, url], capture_output=True, text=True, timeout=120, check=False
        )
        assert done.returncode == 0, f"run {run}: exit code {done.returncode}\n{done.stdout}\n{done.stderr[-3000:]}"
        assert "done" in done.stdout and "Fatal Python error" not in done.stderr
        assert "panic raised StoreError False" in done.stdout, done.stdout
    stored = OutboxStore.connect(url).stats()["pending"]
    print(f"\nasync exit ({engine}): {runs} runs x 200 cancelled aenqueue + 1 panic, exit 0; items stored {stored}")
    assert stored == 200 * runs, "a cancelled call still completes whole"


def test_a_cancelled_call_completes_whole_in_the_background(tmp_path: Path) -> None:
    store = OutboxStore.connect(f"sqlite://{tmp_path / 'c.db'}")

    async def main() -> int:
        task = asyncio.ensure_future(store.aenqueue("t", {"x": 1}, dedupe_key="once"))
        await asyncio.sleep(0)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        deadline = time.monotonic() + 10
        while store.stats()["pending"] == 0:
            assert time.monotonic() < deadline
            await asyncio.sleep(0.01)
        return int(await store.aenqueue("t", {"x": 1}, dedupe_key="once"))

    assert asyncio.run(main()) == store.list()[0].id
    assert store.stats()["pending"] == 1


# -- defect 12: permanent problems reported retryable -----------------------------------------


def test_permanent_database_problems_are_not_retryable(tmp_path: Path) -> None:
    from headrace.errors import StoreError, StoreUnavailable

    folder = tmp_path / "a-folder.db"
    folder.mkdir()
    with pytest.raises(ConfigError, match="is a directory") as raised:
        OutboxStore.connect(f"sqlite://{folder}")
    assert raised.value.retryable is False and str(folder) in str(raised.value)
    missing = tmp_path / "no-such-folder" / "x.db"
    for call in (lambda: OutboxStore.connect(f"sqlite://{missing}"), lambda: StateBackend(f"sqlite://{missing}")):
        with pytest.raises(ConfigError, match="does not exist") as raised:
            call()
        assert raised.value.retryable is False and "no-such-folder" in str(raised.value)
    base = fresh_pg_url().split("?")[0].rsplit("/", 1)[0]
    with pytest.raises(StoreError) as refused:
        OutboxStore.connect(f"{base}/hr_no_such_database")
    assert not isinstance(refused.value, StoreUnavailable) and refused.value.retryable is False
    assert "hr_no_such_database" in str(refused.value)
    with pytest.raises(StoreUnavailable) as unreachable:
        OutboxStore.connect("postgres://postgres@127.0.0.1:1/db")
    assert unreachable.value.retryable is True, "nothing listening may come back: retryable"


# -- defect 7a: `headrace run --once` with a backend that never returns ----------------------

HANGING_BACKEND = """
import time
from headrace import Backend, Metadata

class Hang(Backend):
    @classmethod
    def describe(cls):
        return Metadata(name="hang", app_name="x", app_version="1", description="never returns")

    def run(self, policy_name, policy, **kwargs):
        while True:
            time.sleep(0.05)
        yield {}
"""


@pytest.mark.parametrize("signals,stop_timeout", [(1, "1"), (2, "120")])
def test_run_once_with_a_hung_backend_honours_stop_timeout_and_ctrl_c(
    tmp_path: Path, signals: int, stop_timeout: str
) -> None:
    """`headrace run --once` ignored --stop-timeout and two Ctrl-Cs, and (with a backend still
    running at exit) could crash the interpreter: one Ctrl-C stops within --stop-timeout, a
    second stops at once; either way exit code 130, a message, no traceback, no crash."""
    import os
    import signal
    import subprocess

    (tmp_path / "hang_backend.py").write_text(HANGING_BACKEND)
    (tmp_path / "policies.yaml").write_text("policies:\n  p:\n    config:\n      package: hang_backend\n")
    command = [sys.executable, "-m", "headrace.cli", "--db", f"sqlite://{tmp_path / 'o.db'}", "run"]
    proc = subprocess.Popen(
        [*command, "policies.yaml", "--once", "--stop-timeout", stop_timeout],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
        # As from a terminal: a shell's background job (CI) would start it with SIGINT ignored.
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    time.sleep(3)
    assert proc.poll() is None, "the run should still be going"
    began = time.monotonic()
    proc.send_signal(signal.SIGINT)
    if signals == 2:
        time.sleep(1)
        proc.send_signal(signal.SIGINT)
    try:
        output, _ = proc.communicate(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()
        pytest.fail(f"still running 20 s after {signals} Ctrl-C: {proc.communicate()[0][-2000:]}")
    elapsed = time.monotonic() - began
    assert proc.returncode == 130, (proc.returncode, output[-2000:])
    assert "Traceback" not in output and "interrupted" in output, output
    assert elapsed < 10, elapsed


def test_state_backend_bad_arguments_are_config_errors(db_url: str) -> None:
    """Defect 12 on the state backend: a lone surrogate raised UnicodeEncodeError, a huge or
    non-integer limit OverflowError or TypeError."""
    from headrace.state import WorkflowIdentity

    state = StateBackend(db_url)
    workflow = WorkflowIdentity("wf", "type")
    for call, names in (
        (lambda: state.get_invocation("\ud800"), "surrogate"),
        (lambda: state.get_invocations_by_task("t", limit=10**20), str(10**20)),
        (lambda: state.get_invocations_by_task("t", limit="5"), "'5'"),
        (lambda: state.get_invocations_by_task("\udfff"), "surrogate"),
        (lambda: state.set_workflow_data(workflow, "\ud800", 1), "surrogate"),
        (lambda: state.get_workflow_runs(5), "string"),
        (lambda: state.get_workflow_data(workflow, "\ud800"), "surrogate"),
        (lambda: state.get_workflow_data(workflow, 7), "string"),
        (lambda: state.get_workflow_deterministic_value(workflow, "\udfff"), "surrogate"),
    ):
        with pytest.raises(ConfigError, match=names):
            call()
    state.close()


def test_constructor_arguments_out_of_range_are_config_errors() -> None:
    """Defect 12 on the constructors: a negative or huge size raised OverflowError, a wrong type
    TypeError; each is now a ConfigError naming the value."""
    from headrace import NullSink
    from headrace._core import ExternalOutboxSql

    for call, names in (
        (lambda: PolicyManager(sink=NullSink(), chunk_bytes=-1), "-1"),
        (lambda: PolicyManager(sink=NullSink(), max_runs_per_policy=10**30), str(10**30)),
        (lambda: PolicyManager(sink=NullSink(), chunk_bytes="big"), "'big'"),
        (lambda: ExternalOutboxSql("sqlite", max_payload_bytes=-5), "-5"),
        (lambda: ExternalOutboxSql("sqlite", lease_seconds="soon"), "'soon'"),
        (lambda: ExternalOutboxSql("\ud800"), "surrogate"),
    ):
        with pytest.raises(ConfigError, match=names):
            call()
