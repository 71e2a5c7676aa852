"""`headrace worker`, `headrace outbox list` and `headrace metrics` from the command line."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def headrace(*args: str, cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "headrace.cli", *args],
        cwd=cwd,
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_the_main_job_pulls_the_inventory_and_the_worker_consumes_it(tmp_path: Path) -> None:
    db = f"sqlite://{tmp_path / 'headrace.db'}"
    app = str(ROOT / "examples" / "inventory_app.py")
    result = headrace(
        "--db",
        db,
        "worker",
        "--app",
        app,
        "--once",
        cwd=tmp_path,
        env={"HEADRACE_INVENTORY_DIR": str(tmp_path / "inventory")},
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "bridge host-inventory: ok" in result.stdout
    assert "1 completed" in result.stdout and "0 failed" in result.stdout
    [inventory] = (tmp_path / "inventory").glob("*.json")
    entities = json.loads(inventory.read_text())
    kinds = {next(iter(k for k in e if k != "metadata")) for e in entities}
    assert "device" in kinds and "interface" in kinds, kinds

    again = headrace(
        "--db",
        db,
        "worker",
        "--app",
        app,
        "--once",
        cwd=tmp_path,
        env={"HEADRACE_INVENTORY_DIR": str(tmp_path / "inventory")},
    )
    assert again.returncode == 0 and "bridge host-inventory" not in again.stdout, "not due again yet"

    listing = headrace("--db", db, "outbox", "list", "--topic", "headrace.entities", cwd=tmp_path)
    assert listing.returncode == 0 and "completed" in listing.stdout
    metrics = headrace("--db", db, "metrics", cwd=tmp_path)
    assert 'headrace_outbox_items{status="completed"} 1' in metrics.stdout
    assert 'headrace_policy_runs{policy="host-inventory",status="completed"} 1' in metrics.stdout, metrics.stdout
    assert 'headrace_policy_run_seconds_count{policy="host-inventory"} 1' in metrics.stdout


def test_worker_without_handlers_explains_what_to_do(tmp_path: Path) -> None:
    result = headrace(
        "--db", f"sqlite://{tmp_path / 'h.db'}", "worker", "--once", cwd=tmp_path, env={"HEADRACE_INTEGRATIONS": ""}
    )
    assert result.returncode == 2
    assert "--app" in result.stderr and "HEADRACE_INTEGRATIONS" in result.stderr
