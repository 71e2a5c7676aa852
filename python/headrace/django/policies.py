"""Durable policies for Django: the runner's policy store (``headrace.orb.policies.PolicyStore``,
the one ``headrace-orb-worker`` keeps) on the outbox database's state backend, with an enabled
flag per policy, and the loop that makes a running worker follow it.

* :class:`DjangoPolicies` — save (validated by the runner's own validation), delete, enable,
  disable, list, run history, and "run now" (an outbox item the worker picks up).
* :class:`PolicySync` — used by ``manage.py headrace_worker``: every few seconds it starts new
  and changed enabled policies on the worker's ``PolicyManager`` and stops deleted and disabled
  ones, so edits made in the admin or through the API apply without a restart.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Mapping
from typing import Any

from headrace.errors import ConfigError
from headrace.orb.policies import POLICY_STORE_WORKFLOW, PolicyStore, resolve_env, validate_policy_document

__all__ = [
    "RUN_NOW_TOPIC",
    "DjangoPolicies",
    "PolicyInvalid",
    "PolicySync",
    "open_policies",
]

log = logging.getLogger("headrace.django.policies")

#: Topic of the outbox items asking a worker to run a policy now (payload ``{"policy": name}``).
RUN_NOW_TOPIC = "headrace.policy.run_now"
_DISABLED_KEY = "disabled"


class PolicyInvalid(ConfigError):
    """A policy the runner would refuse; ``errors`` is orb-worker's ``[{"field", "type", "error"}]``."""

    code = "policy_invalid"

    def __init__(self, errors: list[dict[str, str]]) -> None:
        self.errors = errors
        super().__init__("; ".join(f"{e['field'] or e['type']}: {e['error']}" for e in errors))


def validate_policy(name: str, written: Mapping[str, Any]) -> list[dict[str, str]]:
    """The runner's validation of one policy (``config`` and ``scope``) named ``name``; the
    fields of the errors are relative to the policy (``config.schedule``)."""
    errors = validate_policy_document({"policies": {name: dict(written)}})
    prefix = f"policies.{name}."
    return [{**e, "field": e["field"].removeprefix(prefix)} for e in errors]


class DjangoPolicies:
    """The durable policies on ``state`` (a ``headrace.state.StateBackend``)."""

    def __init__(self, state: Any) -> None:
        from headrace.state import WorkflowIdentity

        self.state = state
        self.store = PolicyStore(state)
        self._workflow = WorkflowIdentity(*POLICY_STORE_WORKFLOW)
        self._lock = threading.Lock()

    # -- reading -------------------------------------------------------------------------------

    def all(self) -> dict[str, dict[str, Any]]:
        """Every stored policy as written, by name."""
        return self.store.all()

    def get(self, name: str) -> dict[str, Any] | None:
        return self.store.get(name)

    def disabled(self) -> set[str]:
        stored = self.state.get_workflow_data(self._workflow, _DISABLED_KEY, None)
        return {str(n) for n in stored} if isinstance(stored, list) else set()

    def enabled(self) -> dict[str, dict[str, Any]]:
        """The stored policies a worker should run."""
        off = self.disabled()
        return {name: policy for name, policy in self.all().items() if name not in off}

    def runs(self, name: str, limit: int = 20) -> list[Any]:
        """The policy's recorded runs, newest first (the run store's, on the same database)."""
        from headrace.runner import list_runs

        return list(list_runs(self.state, name, limit=limit))

    # -- writing -------------------------------------------------------------------------------

    def save(self, name: str, written: Mapping[str, Any]) -> None:
        """Stores ``written`` (``config`` and ``scope``, ``${VAR}`` kept as written) under
        ``name`` after the runner's validation; :class:`PolicyInvalid` lists every problem."""
        if not name or "/" in name:
            raise PolicyInvalid([{"field": "name", "type": "value_error", "error": "a name without '/' is required"}])
        errors = validate_policy(name, written)
        if errors:
            raise PolicyInvalid(errors)
        self.store.save(name, dict(written))

    def delete(self, name: str) -> bool:
        with self._lock:
            deleted = self.store.delete(name)
            if name in self.disabled():
                self._write_disabled(self.disabled() - {name})
        return deleted

    def set_enabled(self, name: str, enabled: bool) -> None:
        with self._lock:
            off = self.disabled()
            off = off - {name} if enabled else off | {name}
            self._write_disabled(off)

    def _write_disabled(self, names: set[str]) -> None:
        self.state.set_workflow_data(self._workflow, _DISABLED_KEY, sorted(names))
        self.state.wait_for_all_async_operations()


def open_policies(alias: str | None = None) -> DjangoPolicies:
    """:class:`DjangoPolicies` on a new state backend for ``alias`` (close ``.state`` after)."""
    from headrace.django import db

    return DjangoPolicies(db.open_state(alias))


def request_run_now(name: str, *, using: str | None = None) -> int | None:
    """Asks a worker to run ``name`` now (an outbox item on Django's connection, committed with
    the caller's transaction); returns the item id."""
    from headrace.django.outbox import enqueue

    return enqueue(RUN_NOW_TOPIC, {"policy": name}, using=using)


class PolicySync:
    """Keeps ``manager`` (a ``PolicyManager``) running exactly the enabled stored policies.

    Names the worker runs from ``HEADRACE["POLICIES"]`` are left alone (a stored policy of the
    same name is skipped with a warning). A stored policy that fails to start is logged and
    retried when it changes.
    """

    def __init__(self, manager: Any, policies: DjangoPolicies, *, static: set[str] | None = None) -> None:
        self.manager = manager
        self.policies = policies
        self.static = set(static or ())
        self.running: dict[str, dict[str, Any]] = {}
        self.failed: dict[str, dict[str, Any]] = {}

    def sync(self) -> list[str]:
        """One pass; returns what changed (``"started p"``, ``"stopped p"``, ``"restarted p"``)."""
        desired = {n: p for n, p in self.policies.enabled().items() if n not in self.static}
        changes: list[str] = []
        restarting: set[str] = set()
        for name in list(self.running):
            if desired.get(name) != self.running[name]:
                self._stop(name)
                if name in desired:
                    restarting.add(name)
                else:
                    changes.append(f"stopped {name}")
        for name, written in desired.items():
            if name in self.running or self.failed.get(name) == written:
                continue
            restarted = name in restarting
            try:
                policy = resolve_env(written)
                self.manager.start_policies({"policies": {name: policy}})
            except Exception as exc:
                log.error("stored policy %r could not be started: %s", name, exc)
                self.failed[name] = written
                continue
            self.failed.pop(name, None)
            self.running[name] = written
            changes.append(f"{'restarted' if restarted else 'started'} {name}")
        for name in list(self.failed):
            if name not in desired:
                del self.failed[name]
        for change in changes:
            log.info("policy %s", change)
        return changes

    def _stop(self, name: str) -> None:
        self.running.pop(name, None)
        try:
            self.manager.delete_policy(name)
        except Exception as exc:
            log.warning("stopping policy %r failed: %s", name, exc)
