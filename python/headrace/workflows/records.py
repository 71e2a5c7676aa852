"""The records a workflow run leaves in the state backend, and their read-only views.

A run is a pynenc-style workflow run (``WorkflowIdentity(run_id, "headrace.workflow:<key>")``)
whose workflow data ``"run"`` holds the snapshot of the definition it started with, the event,
its status and each step's status, attempts, redacted input, redacted output and error. Run ids
are derived from the workflow key and the event id, so one event starts at most one run of each
workflow.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import Any

from headrace.state import WorkflowIdentity

__all__ = ["RUN_TYPE_PREFIX", "Execution", "StepRun", "load_executions", "run_id_for"]

RUN_TYPE_PREFIX = "headrace.workflow:"
_NAMESPACE = uuid.UUID("6f1d3c2a-8e0b-4b8e-9a53-1c0d2f7e4a11")

QUEUED, RUNNING, COMPLETED, FAILED = "queued", "running", "completed", "failed"
TERMINAL = (COMPLETED, FAILED)


def run_id_for(workflow_key: str, event_id: str) -> str:
    """The one run id of ``workflow_key`` for ``event_id``."""
    return str(uuid.uuid5(_NAMESPACE, f"{workflow_key}\x00{event_id}"))


@dataclass(frozen=True)
class StepRun:
    """One step of a run as stored (inputs and outputs redacted)."""

    id: str
    execution_id: str
    connector: str
    action: str
    status: str
    attempts: int
    input: Any = None
    output: Any = None
    error: dict[str, Any] | None = None

    @classmethod
    def from_record(cls, execution_id: str, step: dict[str, Any], record: dict[str, Any]) -> StepRun:
        return cls(
            id=step["id"],
            execution_id=execution_id,
            connector=step["connector"],
            action=step["action"],
            status=record.get("status", "pending"),
            attempts=int(record.get("attempts", 0)),
            input=record.get("input"),
            output=record.get("output"),
            error=record.get("error"),
        )


@dataclass(frozen=True)
class Execution:
    """A workflow run as stored: the version it started with, its event, status and steps."""

    id: str
    workflow: str
    version: int
    name: str
    status: str
    event: dict[str, Any]
    steps: dict[str, StepRun] = field(default_factory=dict)
    error: dict[str, Any] | None = None
    created_at: float | None = None
    finished_at: float | None = None

    @classmethod
    def from_record(cls, record: dict[str, Any]) -> Execution:
        definition = record["definition"]
        steps = {
            s["id"]: StepRun.from_record(record["id"], s, record["steps"].get(s["id"], {})) for s in definition["steps"]
        }
        return cls(
            id=record["id"],
            workflow=definition["key"],
            version=int(definition["version"]),
            name=definition.get("name") or definition["key"],
            status=record["status"],
            event=record["event"],
            steps=steps,
            error=record.get("error"),
            created_at=record.get("created_at"),
            finished_at=record.get("finished_at"),
        )


def load_executions(state: Any, workflow_key: str, *, limit: int | None = None) -> list[Execution]:
    """The runs of ``workflow_key`` recorded in ``state``, oldest first (the newest ``limit``)."""
    out = []
    idents: list[WorkflowIdentity] = list(state.get_workflow_runs(RUN_TYPE_PREFIX + workflow_key))
    for ident in idents:
        record = state.get_workflow_data(ident, "run")
        if record is not None:
            out.append(Execution.from_record(record))
    out.sort(key=lambda e: e.created_at or 0.0)
    return out if limit is None else out[-limit:]
