"""examples/django_shop runs as the README says: migrate, place an order, run the worker."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "django_shop"


def run(*args: str, env: dict[str, str]) -> str:
    proc = subprocess.run(
        [sys.executable, "manage.py", *args], cwd=EXAMPLE, env=env, capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc.stdout


def test_order_event_and_retried_task(tmp_path: Path) -> None:
    if os.environ.get("HEADRACE_TEST_DB", "sqlite") != "sqlite":
        pytest.skip("the example runs on its SQLite default")
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "shopsite.settings", "SHOP_DB": str(tmp_path / "shop.sqlite3")}
    inherited = [os.path.abspath(p) for p in env.get("PYTHONPATH", "").split(os.pathsep) if p]
    env["PYTHONPATH"] = os.pathsep.join([str(EXAMPLE), *inherited])
    run("migrate", "-v0", env=env)
    placed = run(
        "shell",
        "-c",
        "import json; from django.test import Client; print(json.dumps(Client().get('/orders/').json()))",
        env=env,
    )
    ids = json.loads(placed.strip().splitlines()[-1])
    first = run("headrace_worker", "--burst", env=env)
    assert "completed 1, retried 1" in first, first
    time.sleep(1.2)  # the task's backoff
    second = run("headrace_worker", "--burst", env=env)
    assert "completed 1" in second, second
    state = run(
        "shell",
        "-c",
        "from orders.models import Order; from orders.tasks import charge_card; "
        f"o = Order.objects.get(pk={ids['order']}); r = charge_card.get_result('{ids['charge']}'); "
        "print(o.confirmed, o.charged, r.status, r.return_value, len(r.errors))",
        env=env,
    )
    assert state.strip().splitlines()[-1] == f"True True SUCCESSFUL charged order {ids['order']} on attempt 2 1"
