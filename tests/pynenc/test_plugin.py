"""headrace.pynenc beyond pynenc's own suite: status model, history format, durability modes,
plugin discovery, exceptions, app scoping."""

from __future__ import annotations

import importlib.metadata
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from conftest import close_backend, headrace_config, store_url
from pynenc import Pynenc, PynencBuilder
from pynenc.exceptions import InvocationStatusOwnershipError, InvocationStatusTransitionError
from pynenc.invocation.status import _CONFIG, InvocationStatus, InvocationStatusRecord, status_record_transition
from pynenc.runner.runner_context import RunnerContext
from pynenc.state_backend.base_state_backend import InvocationHistory

from headrace._core import PynencStore, pynenc_status_model
from headrace.errors import ConfigError, InvalidStatusTransition
from headrace.pynenc import HeadraceStateBackend
from headrace.state import StoredException


def make_app(url: str, **extra: Any) -> Pynenc:
    return Pynenc(config_values=headrace_config(url, **extra))


def history(
    inv_id: str, status: InvocationStatus, runner: str = "r1", owner: str | None = None, at: datetime | None = None
) -> InvocationHistory:
    entry = InvocationHistory(
        invocation_id=inv_id,
        status_record=InvocationStatusRecord(status=status, runner_id=owner),
        runner_context_id=runner,
    )
    if at is not None:
        entry._timestamp = at
    return entry


def test_the_core_status_model_is_pynencs_own() -> None:
    rows = {row[0]: row[1:] for row in pynenc_status_model()}
    assert set(rows) == {None, *(s.value for s in InvocationStatus)}
    for status, definition in _CONFIG.definitions.items():
        key = status.value if status is not None else None
        allowed, is_final, available, requires, acquires, releases, overrides = rows[key]
        assert set(allowed) == {s.value for s in definition.allowed_transitions}, key
        if status is None:
            continue
        assert (is_final, available, requires, acquires, releases, overrides) == (
            definition.is_final,
            definition.available_for_run,
            definition.requires_ownership,
            definition.acquires_ownership,
            definition.releases_ownership,
            definition.overrides_ownership,
        ), key


def test_history_json_round_trips_in_pynencs_format(store_kind: str, tmp_path: Path) -> None:
    store = PynencStore.open(store_url(store_kind, tmp_path), "fmt")
    aware = history("i1", InvocationStatus.PENDING, owner="r-é", at=datetime(2030, 1, 2, 3, 4, 5, 7, tzinfo=UTC))
    aware._timestamp = aware._timestamp.astimezone(__import__("datetime").timezone(timedelta(hours=2)))
    naive = history("i1", InvocationStatus.RUNNING, owner="r-é", at=datetime(2030, 1, 2, 3, 4, 6))
    store.add_histories([aware.to_json(), naive.to_json()])
    assert store.get_history("i1") == [aware.to_json(), naive.to_json()]
    back = [InvocationHistory.from_json(text) for text in store.get_history("i1")]
    assert [(h.timestamp, h.status_record) for h in back] == [
        (aware.timestamp, aware.status_record),
        (naive.timestamp.replace(tzinfo=UTC), naive.status_record),
    ]
    # The seed-era format (pynenc <= 0.0.24) is read too.
    seed = (
        '{"invocation_id": "i2", "_timestamp": "2030-01-01T00:00:00+00:00", "status": "registered",'
        ' "execution_context": null}'
    )
    store.add_histories([seed])
    (entry,) = [InvocationHistory.from_json(t) for t in store.get_history("i2")]
    assert entry.status_record.status == InvocationStatus.REGISTERED
    assert entry.timestamp == datetime(2030, 1, 1, tzinfo=UTC)
    with pytest.raises(ConfigError, match="no status"):
        store.add_histories(['{"invocation_id": "i3", "_timestamp": "2030-01-01T00:00:00", "status": null}'])
    with pytest.raises(ConfigError, match='"finished"'):
        store.add_histories(['{"invocation_id": "i3", "_timestamp": "2030-01-01T00:00:00", "status": "finished"}'])
    store.purge()
    store.close()


def test_enforcing_transitions_raises_pynencs_own_errors_and_stores_nothing(store_kind: str, tmp_path: Path) -> None:
    app = make_app(store_url(store_kind, tmp_path), headrace_transitions="enforce")
    backend = app.state_backend
    ctx = RunnerContext(runner_cls="TestRunner", runner_id="r1")
    record = status_record_transition(None, InvocationStatus.REGISTERED, "r1")
    backend.add_history("inv", record, ctx)
    with pytest.raises(InvocationStatusTransitionError) as transition:
        backend.add_history("inv", InvocationStatusRecord(InvocationStatus.RUNNING, "r1"), ctx)
    assert transition.value.from_status == InvocationStatus.REGISTERED
    assert transition.value.allowed_statuses == _CONFIG.get_definition(InvocationStatus.REGISTERED).allowed_transitions
    pending = status_record_transition(record, InvocationStatus.PENDING, "r1")
    backend.add_history("inv", pending, ctx)
    other = RunnerContext(runner_cls="TestRunner", runner_id="r2")
    with pytest.raises(InvocationStatusOwnershipError) as ownership:
        backend.add_history("inv", InvocationStatusRecord(InvocationStatus.RUNNING, "r1"), other)
    assert (ownership.value.current_owner, ownership.value.attempted_owner) == ("r1", "r2")
    running = status_record_transition(pending, InvocationStatus.RUNNING, "r1")
    backend.add_history("inv", running, ctx)
    assert [h.status_record for h in backend.get_history("inv")] == [record, pending, running]
    # Recovery overrides ownership, as in pynenc.
    backend.add_history("inv", status_record_transition(running, InvocationStatus.RUNNING_RECOVERY, "r2"), other)
    close_backend(app)


def test_recording_mode_stores_what_pynencs_orchestrator_already_checked(store_kind: str, tmp_path: Path) -> None:
    app = make_app(store_url(store_kind, tmp_path))
    ctx = RunnerContext(runner_cls="TestRunner", runner_id="r1")
    app.state_backend.add_history("inv", InvocationStatusRecord(InvocationStatus.SUCCESS), ctx)
    app.state_backend.add_history("inv", InvocationStatusRecord(InvocationStatus.RUNNING), ctx)
    assert [h.status_record.status for h in app.state_backend.get_history("inv")] == ["success", "running"]
    close_backend(app)


@pytest.mark.parametrize("kind", ["sqlite", "postgres"])
def test_durable_writes_are_visible_to_another_process_handle_at_once(kind: str, tmp_path: Path) -> None:
    url = store_url(kind, tmp_path)
    app = make_app(url)
    app.state_backend._set_result("inv-1", "42")
    other = PynencStore.open(url, app.app_id)
    assert other.get_result("inv-1") == "42"
    other.close()
    close_backend(app)


@pytest.mark.parametrize("kind", ["sqlite", "postgres"])
def test_write_behind_batches_reads_its_own_writes_and_waits_explicitly(kind: str, tmp_path: Path) -> None:
    url = store_url(kind, tmp_path)
    app = make_app(url, headrace_durability="write_behind")
    backend = app.state_backend
    ctx = RunnerContext(runner_cls="TestRunner", runner_id="r1")
    for n in range(500):
        backend._set_result(f"inv-{n}", str(n))
        backend.add_history(f"inv-{n}", InvocationStatusRecord(InvocationStatus.REGISTERED), ctx)
    assert backend.get_result("inv-499") == 499  # reads wait for the writes before them
    backend._set_result("late", "1")
    backend.wait_for_all_async_operations()
    other = PynencStore.open(url, app.app_id)
    assert other.get_result("late") == "1"
    assert len(other.history_in_range(0, 2**62, 1000, 0)) == 500
    other.close()
    close_backend(app)


def test_write_behind_raises_a_background_refusal_on_the_next_call(tmp_path: Path) -> None:
    app = make_app(store_url("sqlite", tmp_path), headrace_durability="write_behind", headrace_transitions="enforce")
    ctx = RunnerContext(runner_cls="TestRunner", runner_id="r1")
    app.state_backend.add_history("inv", InvocationStatusRecord(InvocationStatus.SUCCESS), ctx)  # queued
    with pytest.raises(InvalidStatusTransition, match=r'"inv": status success may not follow no status'):
        app.state_backend.wait_for_all_async_operations()
    app.state_backend.wait_for_all_async_operations()  # raised once
    close_backend(app)


def test_bad_settings_name_the_value() -> None:
    with pytest.raises(ConfigError, match='"eventually"'):
        PynencStore.open("memory://", "a", durability="eventually")
    with pytest.raises(ConfigError, match='"strict"'):
        PynencStore.open("memory://", "a", transitions="strict")
    with pytest.raises(ConfigError, match="mysql"):
        make_app("mysql://x").state_backend  # noqa: B018


def test_pynenc_finds_the_plugin_by_entry_point_and_builder_method(tmp_path: Path) -> None:
    names = {ep.value for ep in importlib.metadata.entry_points(group="pynenc.plugins")}
    assert "headrace.pynenc.builder:HeadraceBuilderPlugin" in names
    url = store_url("sqlite", tmp_path)
    app = PynencBuilder().memory().headrace_state(url, transitions="enforce").app_id("built").build()
    assert type(app.state_backend) is HeadraceStateBackend
    assert app.state_backend.conf.headrace_transitions == "enforce"
    assert app.state_backend.get_app_info().app_id == "built"
    close_backend(app)


class PriceError(Exception):
    def __init__(self, sku: str, *, cents: int, tags: set[str]) -> None:
        super().__init__(f"bad price for {sku}")
        self.sku = sku
        self.cents = cents
        self.tags = tags


def test_custom_exceptions_keep_their_class_arguments_and_attributes(store_kind: str, tmp_path: Path) -> None:
    app = make_app(store_url(store_kind, tmp_path))
    app.state_backend.set_exception("inv", PriceError("apple", cents=-3, tags={"x", "y"}))
    back = app.state_backend.get_exception("inv")
    assert type(back) is PriceError
    assert (back.args, back.sku, back.cents, back.tags) == (("bad price for apple",), "apple", -3, {"x", "y"})
    assert "PriceError: bad price for apple" in back.__headrace_traceback__
    # What pynenc's own decoding reads from the same record (its format is kept alongside).
    stored = json.loads(app.state_backend._get_exception("inv"))
    assert (stored["error_name"], stored["pynenc_error"]) == ("PriceError", False)
    close_backend(app)


def test_an_exception_whose_class_cannot_be_imported_comes_back_as_headrace_stored_exception(
    tmp_path: Path,
) -> None:
    class LocalError(Exception):  # defined in a function: not importable
        pass

    app = make_app(store_url("sqlite", tmp_path))
    app.state_backend.set_exception("inv", LocalError("boom", 7))
    back = app.state_backend.get_exception("inv")
    assert isinstance(back, StoredException)
    assert back.type_qualname.endswith("<locals>.LocalError") and back.message == "('boom', 7)"
    assert back.original_args == ("boom", 7)
    assert "LocalError: ('boom', 7)" in back.traceback_text
    close_backend(app)


@pytest.mark.parametrize("kind", ["sqlite", "postgres"])
def test_apps_share_a_database_without_seeing_each_other(kind: str, tmp_path: Path) -> None:
    url = store_url(kind, tmp_path)
    first, second = make_app(url), make_app(url)
    first.state_backend._set_result("same-id", "1")
    second.state_backend._set_result("same-id", "2")
    ctx = RunnerContext(runner_cls="TestRunner", runner_id="shared-runner")
    first.state_backend.store_runner_context(ctx)
    assert second.state_backend.get_runner_context("shared-runner") is None
    first.state_backend.purge()
    with pytest.raises(KeyError):
        first.state_backend.get_result("same-id")
    assert second.state_backend.get_result("same-id") == 2
    infos = {json.loads(info)["app_id"] for _, info in second.state_backend.store.all_app_infos()}
    assert second.app_id in infos and first.app_id not in infos
    close_backend(first)
    close_backend(second)


def test_discover_app_infos_reads_the_store_of_the_default_configuration(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = store_url("sqlite", tmp_path)
    monkeypatch.setenv("PYNENC__HEADRACE_STATE_URL", url)
    app = make_app(url)
    app.state_backend  # noqa: B018  (registers the app info)
    assert app.app_id in HeadraceStateBackend.discover_app_infos()
    close_backend(app)


def test_a_closed_backend_says_so(tmp_path: Path) -> None:
    app = make_app(store_url("sqlite", tmp_path))
    app.state_backend.close()
    with pytest.raises(Exception, match="closed"):
        app.state_backend.get_history("x")


def test_time_ranges_page_in_time_order(store_kind: str, tmp_path: Path) -> None:
    app = make_app(store_url(store_kind, tmp_path))
    base = datetime(2031, 5, 1, tzinfo=UTC)
    for n in range(25):
        entry = history(f"inv-{n % 7}", InvocationStatus.REGISTERED, at=base + timedelta(seconds=(n * 7) % 25))
        app.state_backend._add_histories([entry.invocation_id], entry)
    pages = list(app.state_backend.iter_history_in_timerange(base, base + timedelta(seconds=24), batch_size=10))
    assert [len(p) for p in pages] == [10, 10, 5]
    times = [h.timestamp for page in pages for h in page]
    assert times == sorted(times)
    ids = [
        i
        for page in app.state_backend.iter_invocations_in_timerange(base, base + timedelta(seconds=3), 2)
        for i in page
    ]
    assert ids == ["inv-0", "inv-4"]  # seconds 0..3 hold n = 0, 18, 11, 4: invocations 0 and 4
    close_backend(app)
