"""headrace.state through Python on memory, SQLite and PostgreSQL: the same behaviour on each."""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path

import pytest
from conftest import fresh_pg_url, fresh_sqlite_url

from headrace.errors import (
    ConfigError,
    HeadraceError,
    InvalidStatusTransition,
    InvocationNotFoundError,
    NotFoundError,
    StoreError,
)
from headrace.state import (
    AppInfo,
    Invocation,
    InvocationHistory,
    InvocationStatus,
    StateBackend,
    StoredException,
    WorkflowIdentity,
)

S = InvocationStatus


@pytest.fixture(params=["memory", "sqlite", "postgres"])
def state_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A fresh state database URL, once per engine."""
    if request.param == "memory":
        yield "memory://"
    elif request.param == "sqlite":
        yield fresh_sqlite_url(tmp_path)
    else:
        yield fresh_pg_url()


@pytest.fixture
def state(state_url: str) -> Iterator[StateBackend]:
    backend = StateBackend.connect(state_url)
    yield backend
    if not backend.closed:
        backend.close()


@pytest.fixture(params=["sqlite", "postgres"])
def durable_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """Engines where a second backend can look at what the first made durable."""
    return fresh_sqlite_url(tmp_path) if request.param == "sqlite" else fresh_pg_url()


class AppError(Exception):
    """An importable exception with the usual constructor."""


class NeedsKeyword(Exception):
    def __init__(self, *, code: int) -> None:
        super().__init__(f"code {code}")


def lifecycle(state: StateBackend, inv: Invocation, result: object = "ok") -> None:
    state.upsert_invocation(inv)
    for status in (S.PENDING, S.RUNNING, S.SUCCESS):
        state.add_history(inv, status)
    state.set_result(inv, result)


# ----- invocations -----------------------------------------------------------------------------


def test_invocation_round_trips_every_field(state: StateBackend) -> None:
    wf = WorkflowIdentity("wf-1", "flows.daily", parent_workflow_id="wf-0")
    created = datetime(2030, 1, 2, 3, 4, 5, 678901, tzinfo=timezone(timedelta(hours=2)))
    inv = Invocation(
        "mod.task",
        {"b": [1, 2.5, "é"], "a": None, "n": {"x": True}},
        invocation_id="inv-1",
        workflow=wf,
        parent_invocation_id="inv-0",
        created_at=created,
    )
    state.upsert_invocation(inv)
    got = state.get_invocation("inv-1")
    assert got == inv
    assert got.status is S.REGISTERED and got.workflow == wf
    assert got.created_at == created and got.created_at.tzinfo is not None
    assert list(got.arguments) == ["b", "a", "n"], "argument order survives"
    assert state.get_invocation(inv) == inv  # an Invocation works as well as its id


def test_defaults_of_a_new_invocation(state: StateBackend) -> None:
    inv = Invocation("t")
    assert inv.arguments == {} and inv.status == "registered" and len(inv.invocation_id) == 36
    assert abs(inv.created_at - datetime.now(timezone.utc)) < timedelta(seconds=5)
    state.upsert_invocation(inv)
    assert state.get_invocation(inv.invocation_id).arguments == {}


def test_unknown_invocation_ids_raise_invocation_not_found(state: StateBackend) -> None:
    for call in (
        lambda: state.get_invocation("nope"),
        lambda: state.get_history("nope"),
        lambda: state.get_result("nope"),
        lambda: state.get_exception("nope"),
        lambda: state.add_history("nope", S.PENDING),
        lambda: state.set_result("nope", 1),
        lambda: state.set_exception("nope", ValueError("x")),
    ):
        with pytest.raises(InvocationNotFoundError, match="nope") as info:
            call()
        assert isinstance(info.value, LookupError) and info.value.code == "invocation_not_found"


# ----- history and status --------------------------------------------------------------------


def test_history_in_timestamp_order_moves_the_status(state: StateBackend) -> None:
    inv = Invocation("t")
    state.upsert_invocation(inv)
    state.add_history(inv, S.PENDING, execution_context={"runner": "r1", "pid": 7})
    assert inv.status is S.PENDING, "the object passed is kept in step"
    state.add_history(inv, "running")
    assert inv.status is S.RUNNING
    state.add_history(inv)  # no status change
    state.add_history(inv.invocation_id, S.SUCCESS)
    history = state.get_history(inv)
    assert [h.status for h in history] == [S.PENDING, S.RUNNING, None, S.SUCCESS]
    assert all(isinstance(h, InvocationHistory) for h in history)
    assert [h.timestamp for h in history] == sorted(h.timestamp for h in history)
    assert history[0].execution_context == {"runner": "r1", "pid": 7}
    assert history[1].execution_context is None
    assert history[0].invocation_id == inv.invocation_id
    assert state.get_invocation(inv.invocation_id).status is S.SUCCESS


def test_forbidden_transitions_raise_and_change_nothing(state: StateBackend, state_url: str) -> None:
    inv = Invocation("t")
    state.upsert_invocation(inv)
    with pytest.raises(InvalidStatusTransition, match="registered to success") as info:
        state.add_history(inv, S.SUCCESS)
    assert info.value.code == "invalid_status_transition"
    assert inv.status is S.REGISTERED
    for status in (S.PENDING, S.RUNNING, S.FAILED):
        state.add_history(inv, status)
    for status in (S.RUNNING, S.RETRY, S.PENDING):
        with pytest.raises(InvalidStatusTransition):
            state.add_history(inv, status)
    state.wait_for_all_async_operations()
    assert [h.status for h in state.get_history(inv)] == [S.PENDING, S.RUNNING, S.FAILED]
    # Validated against the store too, for a backend that never saw the invocation.
    if state_url != "memory://":
        other = StateBackend.connect(state_url)
        with pytest.raises(InvalidStatusTransition):
            other.add_history(inv.invocation_id, S.RUNNING)
        other.close()


def test_status_enum_and_transition_table() -> None:
    assert S.RUNNING == "running" and str(S.RUNNING) == "running"
    assert S.REGISTERED.can_transition_to(S.PENDING) and not S.REGISTERED.can_transition_to("success")
    assert S.RUNNING.allowed_next() == {S.SUCCESS, S.FAILED, S.RETRY, S.KILLED}
    assert S.SUCCESS.is_final and S.KILLED.is_final and not S.RETRY.is_final
    with pytest.raises(ConfigError, match="bogus"):
        Invocation("t", status="bogus")


def test_history_json_round_trips_exactly() -> None:
    entry = InvocationHistory("inv-1", S.RUNNING, {"b": [1, 2.5], "a": "é"})
    text = entry.to_json()
    back = InvocationHistory.from_json(text)
    assert back == entry and back.to_json() == text
    assert back.timestamp == entry.timestamp and back.timestamp.tzinfo is not None
    assert back.status is S.RUNNING and back.execution_context == {"b": [1, 2.5], "a": "é"}
    foreign = (
        '{"invocation_id":"i","timestamp":"2030-01-02T03:04:05.000007+05:30",'
        '"status":null,"execution_context":{"z":1,"a":2}}'
    )
    parsed = InvocationHistory.from_json(foreign)
    assert parsed.to_json() == foreign
    assert parsed.timestamp.utcoffset() == timedelta(hours=5, minutes=30)
    assert parsed.timestamp.microsecond == 7 and parsed.status is None
    assert list(parsed.execution_context) == ["z", "a"]


@pytest.mark.parametrize(
    "bad",
    [
        "",
        "{",
        "[]",
        '{"invocation_id":"i","timestamp":"soon","status":null,"execution_context":null}',
        '{"invocation_id":"i","timestamp":"2030-01-01T00:00:00","status":null,"execution_context":null}',
        '{"invocation_id":"i","timestamp":"2030-01-01T00:00:00+00:00","status":"done","execution_context":null}',
    ],
)
def test_malformed_history_json_is_a_config_error(bad: str) -> None:
    with pytest.raises(ConfigError):
        InvocationHistory.from_json(bad)


def test_history_from_json_needs_a_str() -> None:
    with pytest.raises(ConfigError, match="str"):
        InvocationHistory.from_json(b"{}")  # type: ignore[arg-type]


# ----- results, exceptions, values ------------------------------------------------------------


@pytest.mark.parametrize(
    "value",
    [None, 0, -(2**70), 1.25, "text é\n", [1, [2, {"a": None}]], {"z": 1, "a": {"b": [True]}}, (1, 2)],
)
def test_results_round_trip(state: StateBackend, value: object) -> None:
    inv = Invocation("t")
    state.upsert_invocation(inv)
    state.set_result(inv, value)
    expected = list(value) if isinstance(value, tuple) else value
    assert state.get_result(inv) == expected
    state.wait_for_invocation_async_operations(inv)
    assert state.get_result(inv.invocation_id) == expected


def test_a_result_not_set_is_not_found(state: StateBackend) -> None:
    inv = Invocation("t")
    state.upsert_invocation(inv)
    with pytest.raises(NotFoundError, match="no result"):
        state.get_result(inv)
    with pytest.raises(NotFoundError, match="no exception"):
        state.get_exception(inv)


@pytest.mark.parametrize(
    ("value", "type_name"),
    [(object(), "object"), ({1, 2}, "set"), (datetime.now(), "datetime"), (Decimal("1.5"), "Decimal")],
)
def test_non_json_values_are_config_errors_naming_the_type(state: StateBackend, value: object, type_name: str) -> None:
    inv = Invocation("t")
    state.upsert_invocation(inv)
    with pytest.raises(ConfigError, match=type_name):
        state.set_result(inv, value)
    with pytest.raises(ConfigError, match=type_name):
        state.set_result(inv, {"nested": [value]})
    with pytest.raises(ConfigError, match=type_name):
        state.set_workflow_data(WorkflowIdentity("w", "f"), "k", value)
    with pytest.raises(ConfigError, match=type_name):
        state.add_history(inv, S.PENDING, execution_context=value)
    with pytest.raises(ConfigError, match=type_name):
        state.upsert_invocation(Invocation("t", {"x": value}))
    with pytest.raises(NotFoundError):
        state.get_result(inv)


def test_wrong_argument_types_are_config_errors(state: StateBackend) -> None:
    with pytest.raises(ConfigError, match="Invocation"):
        state.upsert_invocation(object())  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="invocation id"):
        state.get_history(42)  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="status"):
        state.add_history("x", 3)  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="dict"):
        Invocation("t", [1, 2])  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="task_id"):
        Invocation("")
    with pytest.raises(ConfigError, match="timezone-aware"):
        Invocation("t", created_at=datetime(2030, 1, 1))
    with pytest.raises(ConfigError, match="exception instance"):
        state.set_exception("x", "not an exception")  # type: ignore[arg-type]
    with pytest.raises(ConfigError):
        StateBackend.connect("mysql://db")


def test_exceptions_are_rebuilt_as_their_class(state: StateBackend) -> None:
    inv = Invocation("t")
    state.upsert_invocation(inv)
    try:
        raise AppError("boom", 3)
    except AppError as exc:
        state.set_exception(inv, exc)
    rebuilt = state.get_exception(inv)
    assert type(rebuilt) is AppError and rebuilt.args == ("boom", 3)
    assert "raise AppError" in rebuilt.__headrace_traceback__  # type: ignore[attr-defined]
    state.set_exception(inv, KeyError("missing"))
    state.wait_for_all_async_operations()
    rebuilt = state.get_exception(inv.invocation_id)
    assert type(rebuilt) is KeyError and rebuilt.args == ("missing",)


def test_unrebuildable_exceptions_become_stored_exceptions(state: StateBackend) -> None:
    class LocalError(Exception):
        pass

    inv = Invocation("t")
    state.upsert_invocation(inv)
    cases: list[tuple[BaseException, str, str]] = [
        (LocalError("local"), "LocalError", "local"),
        (NeedsKeyword(code=7), "NeedsKeyword", "code 7"),
        (ValueError(object()), "ValueError", "<object object at"),  # args not JSON
    ]
    for exc, type_part, message in cases:
        try:
            raise exc
        except BaseException as raised:
            state.set_exception(inv, raised)
        got = state.get_exception(inv)
        assert isinstance(got, StoredException) and isinstance(got, HeadraceError)
        assert type_part in got.type_name and message in got.message
        assert got.type_name in str(got) and "Traceback" in got.traceback_text
        assert got.code == "stored_exception"
    assert state.get_exception(inv).type_name == "ValueError"


def test_workflow_data_and_deterministic_values(state: StateBackend) -> None:
    wf = WorkflowIdentity("wf-1", "flows.x")
    assert state.get_workflow_data(wf, "k") is None
    assert state.get_workflow_data(wf, "k", default=5) == 5
    state.set_workflow_data(wf, "k", {"a": [1, 2]})
    state.set_workflow_deterministic_value(wf, "k", 0.25)
    assert state.get_workflow_data(wf, "k") == {"a": [1, 2]}
    assert state.get_workflow_data("wf-1", "k") == {"a": [1, 2]}
    assert state.get_workflow_deterministic_value(wf, "k") == 0.25
    assert state.get_workflow_deterministic_value(wf, "other") is None
    state.set_workflow_data(wf, "k", None)
    state.wait_for_all_async_operations()
    assert state.get_workflow_data(wf, "k", default="d") is None, "a stored None is not the default"


def test_app_infos(state: StateBackend) -> None:
    with pytest.raises(NotFoundError):
        state.get_app_info()
    state.store_app_info(AppInfo("app-b"))
    state.store_app_info(AppInfo("app-a", module="proj.app", metadata={"version": "1.2"}))
    assert state.get_app_info() == AppInfo("app-a", "proj.app", {"version": "1.2"})
    state.wait_for_all_async_operations()
    assert state.get_all_app_infos() == {
        "app-a": AppInfo("app-a", "proj.app", {"version": "1.2"}),
        "app-b": AppInfo("app-b"),
    }


def test_workflow_runs_types_and_sub_invocations(state: StateBackend) -> None:
    runs = [
        WorkflowIdentity("w1", "flow.b"),
        WorkflowIdentity("w2", "flow.a"),
        WorkflowIdentity("w3", "flow.b", parent_workflow_id="w1"),
    ]
    for wf in [*runs, runs[0]]:
        state.store_workflow_run(wf)
    assert list(state.get_all_workflows()) == ["flow.a", "flow.b"]
    assert list(state.get_all_workflows_runs()) == runs
    assert list(state.get_workflow_runs("flow.b")) == [runs[0], runs[2]]
    for sub in ("i2", "i1", "i2"):
        state.store_workflow_sub_invocation("w1", sub)
    state.store_workflow_sub_invocation(runs[0], Invocation("t", invocation_id="i3"))
    assert state.get_workflow_sub_invocations(runs[0]) == ["i2", "i1", "i3"]
    state.wait_for_all_async_operations()
    assert list(state.get_all_workflows_runs()) == runs
    assert state.get_workflow_sub_invocations("w1") == ["i2", "i1", "i3"]
    assert state.get_workflow_sub_invocations("none") == []


def test_runs_of_a_task_newest_first_and_deletion(state: StateBackend) -> None:
    base = datetime(2030, 1, 1, tzinfo=timezone.utc)
    invs = [Invocation("runs", {"n": n}, created_at=base + timedelta(seconds=n)) for n in range(5)]
    for inv in invs[:3]:
        state.upsert_invocation(inv)
    state.wait_for_all_async_operations()
    for inv in invs[3:]:
        state.upsert_invocation(inv)  # still pending: merged in
    state.upsert_invocation(Invocation("other"))
    newest = state.get_invocations_by_task("runs", limit=3)
    assert [i.arguments["n"] for i in newest] == [4, 3, 2]
    assert len(state.get_invocations_by_task("runs")) == 5
    assert state.delete_invocations([invs[0], invs[1].invocation_id, "unknown"]) == 2
    assert [i.arguments["n"] for i in state.get_invocations_by_task("runs")] == [4, 3, 2]
    with pytest.raises(InvocationNotFoundError):
        state.get_invocation(invs[0].invocation_id)
    with pytest.raises(ConfigError):
        state.get_invocations_by_task("runs", limit=-1)


# ----- write-behind: read-your-writes, durability, failures -----------------------------------


def test_durable_after_wait_for_all_seen_by_another_backend(durable_url: str) -> None:
    writer = StateBackend.connect(durable_url)
    invs = [Invocation("t", {"n": n}) for n in range(200)]
    for n, inv in enumerate(invs):
        lifecycle(writer, inv, result={"n": n})
    writer.wait_for_all_async_operations()
    assert writer.pending_operations == 0
    reader = StateBackend.connect(durable_url)
    for n, inv in enumerate(invs):
        assert reader.get_invocation(inv.invocation_id).status is S.SUCCESS
        assert [h.status for h in reader.get_history(inv)] == [S.PENDING, S.RUNNING, S.SUCCESS]
        assert reader.get_result(inv) == {"n": n}
    reader.close()
    writer.close()


def test_wait_for_invocation_makes_that_invocation_durable(durable_url: str) -> None:
    writer = StateBackend.connect(durable_url)
    reader = StateBackend.connect(durable_url)
    for n in range(20):
        inv = Invocation("t")
        lifecycle(writer, inv, result=n)
        writer.wait_for_invocation_async_operations(inv.invocation_id)
        assert reader.get_result(inv) == n
        assert reader.get_invocation(inv.invocation_id).status is S.SUCCESS
    writer.wait_for_invocation_async_operations("never-written")
    writer.close()
    reader.close()


def test_read_your_writes_and_durability_from_many_threads(state_url: str) -> None:
    state = StateBackend.connect(state_url)
    errors: list[BaseException] = []

    def worker(worker_id: int) -> list[str]:
        ids = []
        for n in range(100):
            inv = Invocation("shared", {"w": worker_id, "n": n})
            state.upsert_invocation(inv)
            state.add_history(inv, S.PENDING)
            state.add_history(inv, S.RUNNING)
            # Read-your-writes at once, whatever the writer task is doing.
            assert state.get_invocation(inv.invocation_id).status is S.RUNNING
            assert len(state.get_history(inv)) == 2
            state.add_history(inv, S.SUCCESS)
            state.set_result(inv, [worker_id, n])
            assert state.get_result(inv) == [worker_id, n]
            if n % 25 == 0:
                state.wait_for_invocation_async_operations(inv.invocation_id)
            ids.append(inv.invocation_id)
        # Several threads wait for everything at the same time.
        state.wait_for_all_async_operations()
        return ids

    with ThreadPoolExecutor(max_workers=6) as pool:
        futures = [pool.submit(worker, w) for w in range(6)]
        all_ids = []
        for f in futures:
            try:
                all_ids.extend(f.result())
            except BaseException as exc:  # pragma: no cover - reported below
                errors.append(exc)
    assert not errors, errors
    assert state.pending_operations == 0
    reader = state if state_url == "memory://" else StateBackend.connect(state_url)
    for inv_id in all_ids:
        assert reader.get_invocation(inv_id).status is S.SUCCESS
        assert len(reader.get_history(inv_id)) == 3
    assert len(reader.get_invocations_by_task("shared", limit=1000)) == 600
    if reader is not state:
        reader.close()
    state.close()


def test_writes_return_before_they_are_durable(durable_url: str) -> None:
    state = StateBackend.connect(durable_url)
    invs = [Invocation("t") for _ in range(3000)]
    start = time.perf_counter()
    for inv in invs:
        lifecycle(state, inv)
    queued_in = time.perf_counter() - start
    # Reads of the last one see everything at once, durable or not.
    assert state.get_invocation(invs[-1].invocation_id).status is S.SUCCESS
    state.wait_for_all_async_operations()
    assert state.pending_operations == 0
    assert queued_in < 30
    state.close()


def _execute(url: str, *statements: str) -> None:
    if url.startswith("sqlite"):
        with sqlite3.connect(url.removeprefix("sqlite://")) as conn:
            for sql in statements:
                conn.execute(sql)
    else:
        import psycopg

        with psycopg.connect(url, autocommit=True) as conn:
            for sql in statements:
                conn.execute(sql)


def _break_history_table(url: str) -> None:
    """Makes every insert into the history table fail (a trigger raising an error)."""
    if url.startswith("sqlite"):
        _execute(
            url,
            "CREATE TRIGGER broken BEFORE INSERT ON headrace_invocation_history "
            "BEGIN SELECT RAISE(ABORT, 'history is broken'); END",
        )
    else:
        _execute(
            url,
            "CREATE FUNCTION broken() RETURNS trigger LANGUAGE plpgsql AS "
            "$$ BEGIN RAISE EXCEPTION 'history is broken'; END $$",
            "CREATE TRIGGER broken BEFORE INSERT ON headrace_invocation_history "
            "FOR EACH STATEMENT EXECUTE FUNCTION broken()",
        )


def _repair_history_table(url: str) -> None:
    on_table = "" if url.startswith("sqlite") else " ON headrace_invocation_history"
    _execute(url, f"DROP TRIGGER broken{on_table}")


def test_a_failed_background_write_is_raised_by_the_next_wait(durable_url: str) -> None:
    state = StateBackend.connect(durable_url)
    _break_history_table(durable_url)
    inv = Invocation("t")
    state.upsert_invocation(inv)
    state.add_history(inv, S.PENDING)  # validated here, fails in the background
    with pytest.raises(StoreError, match="background write") as info:
        state.wait_for_all_async_operations()
    assert inv.invocation_id in str(info.value) and "history is broken" in str(info.value)
    # Reported once; once the database is repaired the same backend works again.
    state.wait_for_all_async_operations()
    _repair_history_table(durable_url)
    other = Invocation("t")
    state.upsert_invocation(other)
    state.wait_for_all_async_operations()
    state.add_history(other, S.PENDING)
    state.wait_for_all_async_operations()
    assert state.get_invocation(other.invocation_id) == other
    state.close()


def test_a_failed_background_write_is_raised_by_the_next_call(durable_url: str) -> None:
    state = StateBackend.connect(durable_url)
    _break_history_table(durable_url)
    inv = Invocation("t")
    state.upsert_invocation(inv)
    state.add_history(inv, S.PENDING)
    deadline = time.monotonic() + 10
    with pytest.raises(StoreError, match="add_history"):
        while time.monotonic() < deadline:
            state.get_all_workflows()
            time.sleep(0.01)
    state.close()


def test_a_closed_backend_raises_clearly_without_hanging(state_url: str) -> None:
    with StateBackend.connect(state_url) as state:
        inv = Invocation("t")
        state.upsert_invocation(inv)
        state.add_history(inv, S.PENDING)
    assert state.closed
    start = time.monotonic()
    for call in (
        lambda: state.get_invocation(inv.invocation_id),
        lambda: state.upsert_invocation(Invocation("t")),
        lambda: state.wait_for_all_async_operations(),
        lambda: state.get_history(inv),
    ):
        with pytest.raises(StoreError, match="closed"):
            call()
    assert time.monotonic() - start < 5
    state.close()  # idempotent
    if state_url != "memory://":
        with StateBackend.connect(state_url) as again:
            assert again.get_invocation(inv.invocation_id).status is S.PENDING, "close() flushed"


def test_many_threads_racing_on_one_invocation_keep_the_table(state: StateBackend) -> None:
    inv = Invocation("t")
    state.upsert_invocation(inv)
    state.add_history(inv, S.PENDING)
    outcomes: list[str] = []
    lock = threading.Lock()

    def try_run() -> None:
        try:
            state.add_history(inv.invocation_id, S.RUNNING)
            result = "ran"
        except InvalidStatusTransition:
            result = "refused"
        with lock:
            outcomes.append(result)

    threads = [threading.Thread(target=try_run) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(outcomes) == ["ran"] + ["refused"] * 7, "exactly one pending -> running"
    state.wait_for_all_async_operations()
    assert [h.status for h in state.get_history(inv)] == [S.PENDING, S.RUNNING]


def test_writes_queued_at_interpreter_exit_are_not_lost(durable_url: str) -> None:
    import subprocess
    import sys

    script = (
        "import sys\n"
        "from headrace.state import Invocation, StateBackend\n"
        "state = StateBackend.connect(sys.argv[1])\n"
        "for n in range(3000):\n"
        "    state.upsert_invocation(Invocation('exit', {'n': n}))\n"
        "# no close() and no wait: the atexit hook flushes\n"
    )
    subprocess.run([sys.executable, "-c", script, durable_url], check=True, timeout=120)
    with StateBackend.connect(durable_url) as state:
        assert len(state.get_invocations_by_task("exit", limit=10_000)) == 3000
