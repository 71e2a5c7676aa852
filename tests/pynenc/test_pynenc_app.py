"""A real pynenc app (tasks, a ThreadRunner, a retried task, a failure, a workflow) with headrace
as its state backend, run end to end in a fresh process per store; then a second process reads
what the first one left in the store."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import pytest
from conftest import store_url

HERE = Path(__file__).parent


def run_app(url: str, app_id: str, durability: str) -> dict[str, Any]:
    env = {
        **os.environ,
        "HEADRACE_STATE_URL": url,
        "HEADRACE_TRANSITIONS": "enforce",
        "HEADRACE_DURABILITY": durability,
        "SHOP_APP_ID": app_id,
    }
    done = subprocess.run(
        [sys.executable, "-c", "import shop_app; shop_app.main()"],
        env=env,
        cwd=HERE,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-4000:]
    report: dict[str, Any] = json.loads(done.stdout)
    return report


READ_BACK = """
import json, sys
from pynenc import Pynenc
from pynenc_tests.conftest import check_all_status_transitions
import headrace.pynenc  # noqa: F401
url, app_id, ids = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
app = Pynenc(config_values={"app_id": app_id, "state_backend_cls": "HeadraceStateBackend",
                            "headrace_state_url": url})
backend = app.state_backend
out = {
    "results": [backend.get_result(i) for i in ids["prices"]],
    "workflow_history": [h.status_record.status.value for h in backend.get_history(ids["workflow"])],
    "workflow_args": backend.get_invocation(ids["workflow"]).call.serialized_arguments,
    "app_info": backend.get_app_info().app_id,
}
# pynenc's own check that every stored history only moves along allowed transitions.
class Orchestrator:
    def count_invocations(self): return len(ids["all"])
    def get_invocation_ids_paginated(self, limit, offset): return ids["all"][offset:offset + limit]
class App:
    orchestrator = Orchestrator()
    state_backend = backend
check_all_status_transitions(App())
backend.close()
print(json.dumps(out))
"""


@pytest.mark.parametrize("durability", ["durable", "write_behind"])
def test_a_real_pynenc_app_runs_end_to_end_on_headrace(store_kind: str, durability: str, tmp_path: Path) -> None:
    url = store_url(store_kind, tmp_path)
    app_id = f"shop_{uuid.uuid4().hex[:8]}"
    report = run_app(url, app_id, durability)

    assert report["results"] == [3, 6, 9, 12, 15]
    assert report["workflow_result"] == {"order_id": "order-1", "total": 10, "reserved": 2}
    assert report["retried_result"] == "confirmed order-2 after 2 attempts"
    assert report["failure"] == {"raised": "OutOfStock", "sku": "apple", "wanted": 50}
    assert report["stored_exception"] == {"type": "OutOfStock", "sku": "apple", "wanted": 50}
    history = report["history"]
    assert history["workflow"][0] == "registered" and history["workflow"][-1] == "success"
    assert "running" in history["workflow"]
    assert history["retried"].count("retry") == 1 and history["retried"][-1] == "success"
    assert history["failing"][-1] == "failed"
    ids = report["invocations"]
    assert ids["workflow"] in report["workflow_runs"]
    assert len(report["workflow_sub_invocations"]) == 2
    assert report["workflow_children"] == report["workflow_sub_invocations"]

    if store_kind == "memory":
        return
    everything = [*ids["prices"], ids["workflow"], ids["retried"], ids["failing"], *report["workflow_children"]]
    ids["all"] = everything
    done = subprocess.run(
        [sys.executable, "-c", READ_BACK, url, app_id, json.dumps(ids)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        cwd=HERE,
    )
    assert done.returncode == 0, done.stderr[-4000:]
    back = json.loads(done.stdout)
    assert back["results"] == [3, 6, 9, 12, 15]
    assert back["workflow_history"] == history["workflow"]
    assert set(back["workflow_args"]) == {"order_id", "sku", "quantity"}
    assert back["app_info"] == app_id
