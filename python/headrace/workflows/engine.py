"""The workflow engine: events in, runs out, every step through the outbox and the state backend.

- :meth:`WorkflowEngine.ingest` (or the signed webhook view) enqueues an event on
  ``headrace.events``. Its handler fires ``event_received`` once per event and, for every active
  workflow whose trigger and conditions match, creates one run (ids derived from the workflow
  key and the event id: at most one per workflow per event) and enqueues it on
  ``headrace.workflow_runs``.
- The run handler executes the steps in order. A step's input is rendered in Rust (templates,
  ``$secret:``/``$env:``) only now, validated against the action's schema and passed to the
  connector. What is stored (inputs, outputs, errors) is redacted first.
- A retryable failure raises out of the handler so the outbox retries the run later; the re-run
  skips the steps that completed. A process that dies mid-step is reclaimed the same way once its
  lease expires. A permanent failure, or a retryable one on the item's last attempt, fails the run
  and later steps do not run. :meth:`WorkflowEngine.reconcile` fails the runs whose outbox item
  was dead-lettered without the handler seeing it (every attempt used up by crashes); the
  handlers call it now and then, and it can be called on a schedule.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import threading
import time
from collections.abc import Callable, Collection, Iterable, Mapping
from typing import Any

from headrace import signals
from headrace._core import redact_text, redact_value
from headrace.connectors import Connector, ConnectorAdapter, invoke
from headrace.errors import (
    ConfigError,
    ConnectorError,
    HeadraceError,
    SecretNotFoundError,
    TemplateError,
)
from headrace.plugins import registry as plugin_registry
from headrace.secrets import SecretsBackend
from headrace.state import WorkflowIdentity
from headrace.webhooks import EVENT_TOPIC, store_event
from headrace.workflows.definition import Workflow
from headrace.workflows.records import (
    COMPLETED,
    FAILED,
    QUEUED,
    RUN_TYPE_PREFIX,
    RUNNING,
    TERMINAL,
    Execution,
    StepRun,
    load_executions,
    run_id_for,
)
from headrace.workflows.redaction import install_log_redaction, known_secrets, remember_secrets
from headrace.workflows.templates import FilterRegistry, check_templates, default_filters, render_input

__all__ = ["EVENT_TOPIC", "RUN_TOPIC", "StepRetry", "WorkflowEngine"]

log = logging.getLogger("headrace.workflows")

RUN_TOPIC = "headrace.workflow_runs"
_EVENTS = WorkflowIdentity("headrace.events", "headrace.events")


class StepRetry(HeadraceError):
    """Raised out of the run handler so the outbox retries the run (message already redacted)."""

    code = "step_retry"
    retryable = True

    def __init__(self, message: str, *, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


def _now() -> float:
    return time.time()


class WorkflowEngine:
    """Matches events to workflows and runs their steps (see the module doc)."""

    def __init__(
        self,
        store: Any,
        state: Any,
        *,
        workflows: Iterable[Workflow] = (),
        connectors: Mapping[str, Connector | ConnectorAdapter | type[Any]] | None = None,
        connector_configs: Mapping[str, Mapping[str, Any]] | None = None,
        secrets: SecretsBackend | None = None,
        filters: FilterRegistry | None = None,
        environ: Mapping[str, str] | None = None,
        allowed_env: Collection[str] | None = None,
        context: Mapping[str, Any] | None = None,
        retry_delay: float | None = None,
        reconcile_interval: float = 30.0,
        sources: Iterable[Callable[[], Iterable[Workflow]]] = (),
    ) -> None:
        self.store = store
        self.state = state
        self.secrets = secrets
        self.filters = filters or default_filters
        self.environ = environ
        self.allowed_env = allowed_env
        self.context = dict(context or {})
        self.retry_delay = retry_delay
        self.reconcile_interval = reconcile_interval
        self._connectors = dict(connectors or {})
        self._connector_configs = {k: dict(v) for k, v in (connector_configs or {}).items()}
        self._instances: dict[str, Any] = {}
        self._versions: dict[str, dict[int, Workflow]] = {}
        self._lock = threading.RLock()
        self._last_reconcile = 0.0
        self._sources = list(sources)
        self._source_keys: dict[int, set[str]] = {}
        install_log_redaction()
        for workflow in workflows:
            self.register(workflow)

    # -- definitions ---------------------------------------------------------------------

    def register(self, workflow: Workflow) -> Workflow:
        """Adds a workflow version; the highest version of a key is the live one.

        Re-registering an identical version is a no-op; a different definition under an
        existing version is refused (bump the version instead).
        """
        check_templates(workflow, self.filters)
        with self._lock:
            versions = self._versions.setdefault(workflow.key, {})
            existing = versions.get(workflow.version)
            if existing is not None and existing.to_dict() != workflow.to_dict():
                raise ConfigError(
                    f"workflow {workflow.key!r} version {workflow.version} is already registered with a different "
                    "definition; register it as a new version"
                )
            versions[workflow.version] = workflow
        return workflow

    def refresh(self) -> None:
        """Registers what every workflow source holds now (each event does this first).

        A source (e.g. the Django admin's stored definitions,
        :func:`headrace.django.automate.workflow_source`) returns the current definition of each
        of its workflows; an edited one comes with a higher version, a deactivated one with
        ``active=False``, and a key the source no longer returns is deactivated. A definition this
        engine refuses (e.g. a filter it lacks) is logged and its previous version stays live.
        """
        for index, source in enumerate(self._sources):
            keys = set()
            for workflow in source():
                keys.add(workflow.key)
                try:
                    self.register(workflow)
                except ConfigError as exc:
                    log.error("workflow %s v%s from a source is refused: %s", workflow.key, workflow.version, exc)
            with self._lock:
                for key in self._source_keys.get(index, set()) - keys:
                    live = self.workflow(key)
                    if live.active:
                        self._versions[key][live.version] = dataclasses.replace(live, active=False)
                self._source_keys[index] = keys

    def workflow(self, key: str, version: int | None = None) -> Workflow:
        versions = self._versions.get(key)
        if not versions:
            raise ConfigError(f"no workflow {key!r}; registered: {', '.join(sorted(self._versions)) or 'none'}")
        if version is None:
            return versions[max(versions)]
        try:
            return versions[version]
        except KeyError:
            raise ConfigError(f"workflow {key!r} has no version {version}") from None

    def live_workflows(self) -> list[Workflow]:
        return [v[max(v)] for _, v in sorted(self._versions.items())]

    # -- events --------------------------------------------------------------------------

    def ingest(
        self,
        source: str,
        event_type: str,
        payload: Mapping[str, Any],
        *,
        delivery_id: str | None = None,
        trace_id: str | None = None,
    ) -> int:
        """Stores an event once per ``delivery_id`` (:func:`headrace.webhooks.store_event`: a
        delivery stored before, even one already processed, is not stored again); returns the
        outbox item id."""
        import uuid

        trace_id = trace_id or uuid.uuid4().hex
        delivery_id = delivery_id or trace_id
        event = {
            "id": f"{source}:{delivery_id}",
            "source": source,
            "type": event_type,
            "delivery_id": delivery_id,
            "payload": dict(payload),
            "received_at": _now(),
            "trace_id": trace_id,
        }
        item_id, _, _ = store_event(self.store, event)
        return item_id

    def handlers(self) -> dict[str, Any]:
        """The outbox handlers to give an ``OutboxWorker``: events and workflow runs."""
        return {EVENT_TOPIC: self.handle_event, RUN_TOPIC: self.handle_run}

    def handle_event(self, item: Any) -> list[str]:
        """Creates (once) the runs an event starts; returns their ids."""
        self._maybe_reconcile()
        self.refresh()
        event = item.payload
        if not isinstance(event, dict) or not {"id", "source", "type", "payload"} <= set(event):
            raise ConfigError(f"outbox item {item.id} on {EVENT_TOPIC} is not an event: {sorted(event or {})}")
        if self.state.get_workflow_data(_EVENTS, event["id"]) is None:
            self.state.set_workflow_data(_EVENTS, event["id"], {"received_at": _now(), "item_id": item.id})
            self._flush()
            signals.event_received.send(sender=type(self), event=event)
        started = []
        for workflow in self.live_workflows():
            if not workflow.matches(event, self.context):
                continue
            run_id = run_id_for(workflow.key, event["id"])
            ident = WorkflowIdentity(run_id, RUN_TYPE_PREFIX + workflow.key)
            if self.state.get_workflow_data(ident, "run") is not None:
                continue
            record: dict[str, Any] = {
                "id": run_id,
                "status": QUEUED,
                "definition": workflow.to_dict(),
                "event": event,
                "steps": {},
                "created_at": _now(),
                "error": None,
            }
            self.state.store_workflow_run(ident)
            self._save(ident, record)
            record["item_id"] = self.store.enqueue(
                RUN_TOPIC,
                {"run_id": run_id, "workflow": workflow.key},
                dedupe_key=f"run:{run_id}",
                trace_id=event.get("trace_id"),
            )
            self._save(ident, record)
            started.append(run_id)
            log.info("event %s started run %s of workflow %s v%s", event["id"], run_id, workflow.key, workflow.version)
        return started

    # -- runs ----------------------------------------------------------------------------

    def execution(self, run_id: str, workflow_key: str) -> Execution:
        record = self.state.get_workflow_data(WorkflowIdentity(run_id, RUN_TYPE_PREFIX + workflow_key), "run")
        if record is None:
            raise ConfigError(f"no run {run_id!r} of workflow {workflow_key!r}")
        return Execution.from_record(record)

    def executions(self, workflow_key: str) -> list[Execution]:
        """Every run of a workflow, oldest first."""
        return load_executions(self.state, workflow_key)

    def handle_run(self, item: Any) -> str:
        """Runs (or resumes) one workflow run; returns its final status."""
        self._maybe_reconcile()
        run_id, key = item.payload["run_id"], item.payload["workflow"]
        ident = WorkflowIdentity(run_id, RUN_TYPE_PREFIX + key)
        record = self.state.get_workflow_data(ident, "run")
        if record is None:
            raise ConfigError(f"outbox item {item.id} names run {run_id!r} of {key!r}, which does not exist")
        if record["status"] in TERMINAL:
            return str(record["status"])
        last_attempt = item.attempts >= item.max_attempts
        if record["status"] == QUEUED:
            record["status"] = RUNNING
            record["started_at"] = _now()
            self._save(ident, record)
            signals.workflow_started.send(sender=type(self), execution=Execution.from_record(record))
        for step in record["definition"]["steps"]:
            state = record["steps"].setdefault(step["id"], {"status": "pending", "attempts": 0})
            if state["status"] == COMPLETED:
                continue
            if not self._run_step(ident, record, step, state, last_attempt):
                return FAILED
        record["status"] = COMPLETED
        record["finished_at"] = _now()
        self._save(ident, record)
        signals.workflow_completed.send(sender=type(self), execution=Execution.from_record(record))
        return COMPLETED

    def _run_step(
        self, ident: WorkflowIdentity, record: dict[str, Any], step: dict[str, Any], state: dict[str, Any], last: bool
    ) -> bool:
        state.update(status=RUNNING, attempts=int(state.get("attempts", 0)) + 1, started_at=_now(), error=None)
        self._save(ident, record)
        execution = Execution.from_record(record)
        signals.step_started.send(sender=type(self), execution=execution, step=execution.steps[step["id"]])
        resolved: list[str] = []
        rendered: Any = None
        try:
            rendered, resolved = render_input(
                step["input"],
                self._template_context(record),
                secrets=self.secrets,
                environ=self.environ,
                allowed_env=self.allowed_env,
                filters=self.filters,
            )
            remember_secrets(resolved)
            connector = self._connector(step["connector"])
            output = invoke(
                connector,
                step["action"],
                rendered,
                context={
                    "execution_id": record["id"],
                    "step_id": step["id"],
                    "trace_id": record["event"].get("trace_id"),
                },
            )
        except Exception as exc:
            error = self._describe(exc, resolved)
            state["input"] = self._redact(rendered if rendered is not None else step["input"], resolved)
            state["error"] = error
            retry = error["retryable"] and not last
            if retry:
                state["status"] = "retrying"
                self._save(ident, record)
                execution = Execution.from_record(record)
                signals.step_failed.send(
                    sender=type(self),
                    execution=execution,
                    step=execution.steps[step["id"]],
                    error=error,
                    will_retry=True,
                )
                delay = error.get("retry_after")
                raise StepRetry(
                    f"step {step['id']} of run {record['id']} failed ({error['code']}): {error['message']}",
                    retry_after=delay if delay is not None else self.retry_delay,
                ) from None
            state["status"] = FAILED
            state["finished_at"] = _now()
            record["status"] = FAILED
            record["finished_at"] = _now()
            record["error"] = {"step": step["id"], **error}
            self._save(ident, record)
            execution = Execution.from_record(record)
            signals.step_failed.send(
                sender=type(self), execution=execution, step=execution.steps[step["id"]], error=error, will_retry=False
            )
            signals.workflow_failed.send(sender=type(self), execution=execution, error=record["error"])
            log.warning(
                "run %s of %s failed at step %s: %s", record["id"], ident.workflow_type, step["id"], error["message"]
            )
            return False
        state["input"] = self._redact(rendered, resolved)
        state["output"] = self._redact(output, resolved)
        state["status"] = COMPLETED
        state["finished_at"] = _now()
        self._save(ident, record)
        execution = Execution.from_record(record)
        step_run: StepRun = execution.steps[step["id"]]
        signals.step_completed.send(sender=type(self), execution=execution, step=step_run, output=step_run.output)
        return True

    # -- crash-exhausted runs ------------------------------------------------------------

    def reconcile(self) -> list[str]:
        """Fails every unfinished run whose outbox item was dead-lettered; returns their ids.

        That happens when every attempt died with its process (the reaper dead-letters the item
        without the handler ever returning), so nothing else would ever finish the run.
        """
        failed = []
        for key in sorted(self._versions):
            for ident in self.state.get_workflow_runs(RUN_TYPE_PREFIX + key):
                record = self.state.get_workflow_data(ident, "run")
                if record is None or record["status"] in TERMINAL or record.get("item_id") is None:
                    continue
                try:
                    item = self.store.get(record["item_id"])
                except Exception:
                    continue
                if str(item.status) != "failed":
                    continue
                reason = self._redact(item.last_error or "the outbox item was dead-lettered", [])
                record["status"] = FAILED
                record["finished_at"] = _now()
                record["error"] = {
                    "code": "attempts_exhausted",
                    "message": f"every attempt of the run's outbox item was used up: {reason}",
                    "retryable": False,
                }
                for state in record["steps"].values():
                    if state.get("status") in (RUNNING, "retrying"):
                        state["status"] = FAILED
                        state["error"] = record["error"]
                self._save(ident, record)
                signals.workflow_failed.send(
                    sender=type(self), execution=Execution.from_record(record), error=record["error"]
                )
                log.warning("run %s of %s failed: %s", record["id"], key, record["error"]["message"])
                failed.append(record["id"])
        return failed

    def _maybe_reconcile(self) -> None:
        now = time.monotonic()
        if now - self._last_reconcile < self.reconcile_interval:
            return
        self._last_reconcile = now
        try:
            self.reconcile()
        except Exception:
            log.exception("reconciling abandoned workflow runs failed")

    # -- helpers -------------------------------------------------------------------------

    def _connector(self, key: str) -> Any:
        with self._lock:
            instance = self._instances.get(key)
            if instance is not None:
                return instance
            given = self._connectors.get(key)
            cls_or_obj = given if given is not None else plugin_registry("connectors").get(key)
            if isinstance(cls_or_obj, type):
                config = self._connector_configs.get(key)
                instance = cls_or_obj(config) if issubclass(cls_or_obj, Connector) else cls_or_obj()
            else:
                instance = cls_or_obj
            self._instances[key] = instance
            return instance

    def _template_context(self, record: dict[str, Any]) -> dict[str, Any]:
        definition = record["definition"]
        return {
            "event": record["event"],
            "execution": {
                "id": record["id"],
                "workflow": definition["key"],
                "version": definition["version"],
                "name": definition.get("name") or definition["key"],
            },
            "steps": {
                sid: {"output": s.get("output")} for sid, s in record["steps"].items() if s.get("status") == COMPLETED
            },
            "context": self.context,
        }

    def _redact(self, value: Any, resolved: list[str]) -> Any:
        secrets_now = list({*resolved, *known_secrets()})
        if isinstance(value, str):
            return redact_text(value, secrets_now)
        try:
            return redact_value(value, secrets_now)
        except ConfigError:
            return redact_text(repr(value), secrets_now)

    def _describe(self, exc: BaseException, resolved: list[str]) -> dict[str, Any]:
        secrets_now = list({*resolved, *known_secrets()})
        if isinstance(exc, ConnectorError):
            return {
                "code": exc.code,
                "message": redact_text(exc.message, secrets_now),
                "retryable": bool(exc.retryable),
                "connector": exc.connector,
                "retry_after": exc.retry_after,
                "errors": redact_value(exc.errors, secrets_now),
            }
        if isinstance(exc, TemplateError):
            return {
                "code": exc.code,
                "message": redact_text(exc.message, secrets_now),
                "retryable": False,
                "variable": exc.variable,
            }
        if isinstance(exc, SecretNotFoundError):
            return {"code": exc.code, "message": exc.message, "retryable": False, "key": exc.key}
        if isinstance(exc, HeadraceError):
            return {
                "code": exc.code,
                "message": redact_text(exc.message, secrets_now),
                "retryable": bool(exc.retryable),
            }
        # Unknown failures of our own code: retry (until the attempts run out), keep the type only.
        return {
            "code": "internal",
            "message": redact_text(f"{type(exc).__name__}: {exc}", secrets_now),
            "retryable": True,
        }

    def _save(self, ident: WorkflowIdentity, record: dict[str, Any]) -> None:
        self.state.set_workflow_data(ident, "run", record)
        self._flush()

    def _flush(self) -> None:
        # Step boundaries must be durable before the next side effect: a crash must not forget
        # that a step already ran.
        wait = getattr(self.state, "wait_for_all_async_operations", None)
        if wait is not None:
            wait()


def environ_allowlist_from_env() -> list[str] | None:
    """``HEADRACE_TEMPLATE_ENV`` (comma-separated) restricts what ``env`` exposes to templates."""
    raw = os.environ.get("HEADRACE_TEMPLATE_ENV")
    return [v.strip() for v in raw.split(",") if v.strip()] if raw else None
