"""`headrace run` and `headrace runs`: the README's main command on the real example integration
(examples/host_inventory.py: this machine's interfaces, addresses and mounts)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from headrace import OutboxStore
from headrace.cli import main

ROOT = Path(__file__).resolve().parents[2]
POLICIES = ROOT / "examples" / "policies.yaml"


def _cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "headrace.cli", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "HEADRACE_SITE": "cli-test-site"},
    )


def _entities(url: str) -> list[dict]:
    items = OutboxStore.connect(url).claim_batch("test", limit=1000, topics=["headrace.entities"])
    return [entity for item in items for entity in item.payload["entities"]]


def test_headrace_run_ships_the_host_inventory_and_runs_lists_it(tmp_path: Path) -> None:
    url = f"sqlite://{tmp_path / 'headrace.db'}"
    done = _cli("run", str(POLICIES), "--db", url, cwd=tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    out = done.stdout
    assert "host-inventory" in out and "completed" in out
    assert "entities -> outbox topic 'headrace.entities'" in out

    entities = _entities(url)
    kinds = [next(k for k in entity if k != "metadata") for entity in entities]
    assert kinds[0] == "device"
    assert entities[0]["device"]["name"] == socket.gethostname()
    assert entities[0]["device"]["site"] == {"name": "cli-test-site"}
    interfaces = {e["interface"]["name"] for e in entities if "interface" in e}
    assert "lo" in interfaces and interfaces <= set(os.listdir("/sys/class/net"))
    assert any(e["ip_address"]["address"].startswith("127.0.0.1/") for e in entities if "ip_address" in e)
    assert any(e["filesystem"]["mountpoint"] == "/" for e in entities if "filesystem" in e)
    run_ids = {e["metadata"]["run_id"] for e in entities}
    assert len(run_ids) == 1

    # Runs are durable: another process lists them.
    listed = _cli("runs", "--db", url, cwd=tmp_path)
    assert listed.returncode == 0, listed.stderr
    assert run_ids.pop() in listed.stdout
    assert "host-inventory" in listed.stdout and "schedule" in listed.stdout
    assert "ENTITIES" in listed.stdout.splitlines()[0]


def test_headrace_run_once_in_process_and_failures_exit_non_zero(tmp_path: Path, capsys) -> None:
    url = f"sqlite://{tmp_path / 'once.db'}"
    assert main(["run", str(POLICIES), "--db", url, "--once"]) == 0
    out = capsys.readouterr().out
    assert "manual" in out and "completed" in out
    assert main(["runs", "host-inventory", "--db", url]) == 0
    assert "host-inventory" in capsys.readouterr().out
    assert main(["runs", "nope", "--db", url]) == 0
    assert "no runs recorded for policy 'nope'" in capsys.readouterr().out

    broken = tmp_path / "broken.yaml"
    broken.write_text("policies:\n  x:\n    config:\n      schedule: nonsense\n")
    assert main(["run", str(broken), "--db", url]) == 2
    err = capsys.readouterr().err
    assert "policies.x.config.package: required" in err and "config_error" in err

    failing_dir = tmp_path / "mods"
    failing_dir.mkdir()
    (failing_dir / "failing_backend.py").write_text(
        "from headrace import Backend, Metadata\n"
        "class F(Backend):\n"
        "    @classmethod\n"
        "    def describe(cls):\n"
        "        return Metadata('f', 'a', '1')\n"
        "    def run(self, policy_name, policy, **kw):\n"
        "        raise RuntimeError('source API down')\n"
    )
    failing = failing_dir / "failing.yaml"
    failing.write_text("policies:\n  f:\n    config:\n      package: failing_backend\n")
    assert main(["run", str(failing), "--db", url, "--once"]) == 1
    assert "RuntimeError: source API down" in capsys.readouterr().out
    assert main(["run", str(tmp_path / "missing.yaml"), "--db", url]) == 2


def test_dry_run_writes_chunk_files(tmp_path: Path) -> None:
    url = f"sqlite://{tmp_path / 'dry.db'}"
    done = _cli("run", str(POLICIES), "--db", url, "--once", "--dry-run", str(tmp_path / "out"), cwd=tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    files = list((tmp_path / "out").glob("host-inventory-*.json"))
    assert len(files) == 1
    assert _entities(url) == []


@pytest.mark.parametrize("args", [["run", "--help"], ["runs", "--help"]])
def test_help(args: list[str], capsys) -> None:
    with pytest.raises(SystemExit) as info:
        main(args)
    assert info.value.code == 0
