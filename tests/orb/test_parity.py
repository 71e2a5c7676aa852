"""The requests Diode receives from headrace carry the same entities and the same run-id
placement as orb-worker 1.16 sends for the same backend (request ids and run ids aside): each
backend runs under the real orb-worker (its own virtualenv) and under headrace, both into a
recording ``diode.v1`` server."""

from __future__ import annotations

import json
import os
import subprocess
import textwrap
from typing import Any

import pytest
from google.protobuf.json_format import MessageToDict
from orb_helpers import BACKENDS, orb_python

from headrace.orb import DiodeSink
from headrace.runner import PolicyManager

ORB_RUN = textwrap.dedent(
    """
    import sys
    from worker.models import DiodeConfig, Policy
    from worker.policy.run import RunStore
    from worker.policy.runner import PolicyRunner
    target, package = sys.argv[1], sys.argv[2]
    policy = Policy.model_validate({"config": {"package": package, "custom": "x", "devices": 5,
        "schedule": "0 0 1 1 *"}, "scope": {"target": "h", "port": 22}})
    runner = PolicyRunner()
    runner.setup("parity", DiodeConfig(target=target, prefix="agent", client_id="i", client_secret="s"),
                 policy, RunStore())
    backend = runner.scheduler.get_jobs()[0].args[1]
    runner.run(runner._diode_client, backend, policy)
    run = runner.run_store.get_runs_for_policy("parity")[0]
    runner.stop()
    assert run.status.value == "completed", run.reason
    print(run.id)
    """
)


def normalised(request: Any, run_id: str) -> dict[str, Any]:
    as_dict = MessageToDict(request, preserving_proto_field_name=True)
    as_dict.pop("id")
    for entity in as_dict["entities"]:
        entity.pop("timestamp")
    text = json.dumps(as_dict, sort_keys=True).replace(run_id, "<run_id>")
    return {"request": text}


@pytest.mark.parametrize("package", ["orb_describe_backend", "orb_legacy_backend", "orb_mock_backend"])
def test_headrace_sends_what_orb_worker_sends(diode, package: str) -> None:
    env = {**os.environ, "PYTHONPATH": str(BACKENDS)}
    result = subprocess.run(
        [str(orb_python()), "-c", ORB_RUN, diode.target, package],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    orb_run_id = result.stdout.strip().splitlines()[-1]
    orb_requests = list(diode.requests)
    diode.requests.clear()

    sink = DiodeSink(diode.target, "i", "s", app_name_prefix="agent")
    manager = PolicyManager(sink=sink)
    try:
        manager.start_policies(
            {
                "policies": {
                    "parity": {
                        "config": {"package": package, "custom": "x", "devices": 5, "schedule": "0 0 1 1 *"},
                        "scope": {"target": "h", "port": 22},
                    }
                }
            },
        )
        run = manager.run_now("parity")
    finally:
        manager.stop()
        sink.close()
    assert run.status == "completed", run.reason
    ours = list(diode.requests)
    assert len(ours) == len(orb_requests) == 1
    theirs, mine = orb_requests[0].request, ours[0].request
    # The run id sits in each entity's own metadata and in the request metadata, in both.
    for request, run_id in ((theirs, orb_run_id), (mine, run.id)):
        assert request.metadata["run_id"] == run_id
        assert {e.device.metadata["run_id"] for e in request.entities} == {run_id}
    assert set(mine.metadata.keys()) == set(theirs.metadata.keys())
    assert normalised(mine, run.id) == normalised(theirs, orb_run_id)
