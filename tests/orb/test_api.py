"""orb-worker's HTTP API on headrace: every route and status code with orb-worker's JSON bodies,
served in-process; and ``headrace-orb-worker`` as orb-agent launches it, with the three
orb-shaped backends running unchanged and posted policies surviving a restart."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from orb_helpers import BACKENDS, ROOT, call

from headrace.orb import DiodeConfig, OrbWorker
from headrace.orb.server import OrbHttpServer
from headrace.state import StateBackend


def document(*names: str, package: str = "orb_describe_backend", schedule: str | None = None) -> str:
    lines = ["policies:"]
    for name in names:
        lines += [f"  {name}:", "    config:", f"      package: {package}", "      custom: c"]
        if schedule:
            lines.append(f'      schedule: "{schedule}"')
        lines += ["    scope:", "      target: h", "      port: 22"]
    return "\n".join(lines) + "\n"


@pytest.fixture
def api(tmp_path: Path, diode) -> Iterator[tuple[int, OrbWorker]]:
    state = StateBackend.connect(f"sqlite://{tmp_path / 'api.db'}")
    worker = OrbWorker(diode=DiodeConfig(target=diode.target, client_id="i", client_secret="s"), state=state)
    server = OrbHttpServer(worker, "127.0.0.1", 0)
    server.serve_in_thread()
    try:
        yield server.port, worker
    finally:
        server.shutdown()
        server.server_close()
        worker.stop()
        state.close()


def test_status_and_capabilities(api) -> None:
    port, _ = api
    status, body = call(port, "GET", "/api/v1/status")
    assert status == 200 and set(body) == {"version", "up_time_seconds"} and body["up_time_seconds"] >= 0
    assert call(port, "GET", "/api/v1/capabilities") == (200, {"loaded_modules": []})
    assert call(port, "POST", "/api/v1/policies", document("a"))[0] == 201
    assert call(port, "GET", "/api/v1/capabilities") == (200, {"loaded_modules": ["orb_describe_backend"]})


def test_post_policies_status_codes(api, diode) -> None:
    port, worker = api
    assert call(port, "POST", "/api/v1/policies", document("a"), "application/json") == (
        400,
        {"detail": "invalid Content-Type. Only 'application/x-yaml' is supported"},
    )
    assert call(port, "POST", "/api/v1/policies", "policies: [unclosed") == (400, {"detail": "Invalid YAML format"})
    status, body = call(port, "POST", "/api/v1/policies", "policies:\n  a:\n    config:\n      schedule: bad\n")
    assert status == 403
    assert {"field": "policies.a.scope", "type": "missing", "error": "Field required"} in body["detail"]
    assert {(e["field"], e["type"]) for e in body["detail"]} >= {
        ("policies.a.config.package", "missing"),
        ("policies.a.config.schedule", "value_error"),
    }
    assert call(port, "POST", "/api/v1/policies", "policies: {}\n") == (400, {"detail": "no policies found in request"})
    assert call(port, "POST", "/api/v1/policies", document("one")) == (201, {"detail": "policy 'one' was started"})
    assert call(port, "POST", "/api/v1/policies", document("two", "three")) == (
        201,
        {"detail": "policies ['two', 'three'] were started"},
    )
    assert call(port, "POST", "/api/v1/policies", document("one")) == (409, {"detail": "policy 'one' already exists"})
    # A policy that fails to start rolls back the ones the same request started.
    broken = document("four") + document("five", package="no_such_package").replace("policies:\n", "")
    status, body = call(port, "POST", "/api/v1/policies", broken)
    assert status == 400 and "no_such_package" in body["detail"]
    assert sorted(worker.policies()) == ["one", "three", "two"]
    assert sorted(worker.store.all()) == ["one", "three", "two"]  # type: ignore[union-attr]
    assert worker.manager.wait_idle(60)
    # Each started policy ran once (no schedule); "four" may have run before its rollback.
    assert len(diode.entities()) in (3, 4)


def test_delete_policy_and_unknown_routes(api) -> None:
    port, worker = api
    assert call(port, "POST", "/api/v1/policies", document("gone", schedule="0 0 1 1 *"))[0] == 201
    assert call(port, "DELETE", "/api/v1/policies/gone") == (200, {"detail": "policy 'gone' was deleted"})
    assert call(port, "DELETE", "/api/v1/policies/gone") == (404, {"detail": "policy 'gone' not found"})
    assert worker.store.all() == {}  # type: ignore[union-attr]
    assert call(port, "GET", "/api/v1/nothing") == (404, {"detail": "Not Found"})
    assert call(port, "GET", "/api/v1/policies") == (405, {"detail": "Method Not Allowed"})
    assert call(port, "POST", "/api/v1/status") == (405, {"detail": "Method Not Allowed"})


def _launch(tmp_path: Path, diode, state_url: str, *extra: str) -> tuple[subprocess.Popen[str], int]:
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(BACKENDS), str(ROOT / "python")]),
        "ORB_TEST_SECRET": "s3cret",
    }
    port_file = tmp_path / f"port-{time.monotonic_ns()}"
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "headrace.orb.cli",
            "-s",
            "127.0.0.1",
            "-p",
            "0",
            "--port-file",
            str(port_file),
            "-t",
            diode.target,
            "-c",
            "client",
            "-k",
            "${ORB_TEST_SECRET}",
            "-a",
            "agent",
            "--state",
            state_url,
            *extra,
        ],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 60
    while not port_file.exists() or not port_file.read_text():
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            raise AssertionError(f"headrace-orb-worker did not start: {process.communicate()}")
        time.sleep(0.05)
    return process, int(port_file.read_text())


def _stop(process: subprocess.Popen[str]) -> str:
    process.send_signal(signal.SIGTERM)
    _, err = process.communicate(timeout=60)
    assert process.returncode == 0, err
    return err


@pytest.mark.parametrize("outbox", [False, True], ids=["direct", "outbox"])
def test_the_three_backends_run_under_the_console_script_and_survive_a_restart(tmp_path, diode, outbox, db_url) -> None:
    extra = ("--outbox",) if outbox else ()
    process, port = _launch(tmp_path, diode, db_url, *extra)
    try:
        body = (
            document("modern")
            + document("legacy", package="orb_legacy_backend").replace("policies:\n", "")
            + document("mock", package="orb_mock_backend").replace("policies:\n", "")
        )
        assert call(port, "POST", "/api/v1/policies", body) == (
            201,
            {"detail": "policies ['modern', 'legacy', 'mock'] were started"},
        )
        deadline = time.monotonic() + 60
        while len(diode.entities()) < 3 and time.monotonic() < deadline:
            time.sleep(0.1)
    finally:
        err = _stop(process)
    names = sorted(e.device.name for e in diode.entities())
    assert names == ["Device 0", "Device A", "legacy-device-legacy"], err
    apps = sorted(r.request.producer_app_name for r in diode.requests)
    assert apps == ["agent/describe_app", "agent/legacy_app", "agent/mock_app"]
    for recorded in diode.requests:
        (entity,) = recorded.request.entities
        assert entity.device.metadata["run_id"] == recorded.request.metadata["run_id"]

    # Restarted, it restarts the stored policies (which run again: no schedule) and knows them.
    process, port = _launch(tmp_path, diode, db_url, *extra)
    try:
        deadline = time.monotonic() + 60
        while len(diode.entities()) < 6 and time.monotonic() < deadline:
            time.sleep(0.1)
        assert call(port, "POST", "/api/v1/policies", document("modern")) == (
            409,
            {"detail": "policy 'modern' already exists"},
        )
        assert call(port, "DELETE", "/api/v1/policies/mock") == (200, {"detail": "policy 'mock' was deleted"})
    finally:
        _stop(process)
    assert len(diode.entities()) == 6
    process, port = _launch(tmp_path, diode, db_url, *extra)
    try:
        assert call(port, "DELETE", "/api/v1/policies/mock") == (404, {"detail": "policy 'mock' not found"})
        assert call(port, "GET", "/api/v1/capabilities") == (
            200,
            {"loaded_modules": ["orb_describe_backend", "orb_legacy_backend"]},
        )
    finally:
        _stop(process)


def test_flags_and_errors_of_the_command_line(tmp_path) -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT / "python")}
    cli = [sys.executable, "-m", "headrace.orb.cli"]
    version = subprocess.run([*cli, "-V"], env=env, capture_output=True, text=True, timeout=60)
    assert version.returncode == 0 and "Diode SDK version" in version.stdout
    missing = subprocess.run(cli, env=env, capture_output=True, text=True, timeout=60)
    assert missing.returncode == 2 and "--diode-target required" in missing.stderr
    env.pop("ORB_UNSET_VAR", None)
    unset = subprocess.run([*cli, "-t", "${ORB_UNSET_VAR}"], env=env, capture_output=True, text=True, timeout=60)
    assert unset.returncode == 2 and "ORB_UNSET_VAR" in unset.stderr
