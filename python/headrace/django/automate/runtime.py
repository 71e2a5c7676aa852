"""The workflow engine of a Django project: ``manage.py headrace_worker`` runs the admin's workflows.

::

    HEADRACE = {
        "HANDLERS": {
            "headrace.events": "headrace.django.automate.runtime.handle_event",
            "headrace.workflow_runs": "headrace.django.automate.runtime.handle_run",
        },
    }
    HEADRACE_AUTOMATE = {                      # all optional
        "SECRETS_BACKEND": "env",              # a key of the secrets plugin registry
        "SECRETS_OPTIONS": {},                 # its constructor's keyword arguments
        "CONNECTOR_CONFIGS": {"slack": {...}}, # per connector key
        "CONTEXT": {},                         # the JsonLogic and template ``context``
    }

One engine per process, built on first use (never at import): the outbox store and the state
backend of ``HEADRACE["DATABASE"]``, connectors from the plugin registry (``HEADRACE_PLUGINS``
and entry points), the secrets backend above, and the workflows stored in the admin
(:func:`headrace.django.automate.workflow_source`), refreshed before each event.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from typing import Any

from headrace.errors import ConfigError
from headrace.workflows import WorkflowEngine

__all__ = ["engine", "handle_event", "handle_run", "reset"]

SETTING = "HEADRACE_AUTOMATE"
_KNOWN = {"SECRETS_BACKEND", "SECRETS_OPTIONS", "CONNECTOR_CONFIGS", "CONTEXT"}

_lock = threading.Lock()
_engine: WorkflowEngine | None = None


def _settings() -> dict[str, Any]:
    from django.conf import settings

    raw = getattr(settings, SETTING, None) or {}
    if not isinstance(raw, Mapping):
        raise ConfigError(f"settings.{SETTING} must be a dict")
    unknown = set(raw) - _KNOWN
    if unknown:
        raise ConfigError(f"settings.{SETTING} has unknown keys {sorted(unknown)}; known: {sorted(_KNOWN)}")
    return dict(raw)


def _build() -> WorkflowEngine:
    from headrace.django import db
    from headrace.django.automate import workflow_source
    from headrace.django.results import state_for
    from headrace.plugins import registry

    config = _settings()
    secrets_cls = registry("secrets").get(str(config.get("SECRETS_BACKEND", "env")))
    alias = db.outbox_alias()
    return WorkflowEngine(
        db.open_store(alias),
        state_for(alias),
        secrets=secrets_cls(**dict(config.get("SECRETS_OPTIONS") or {})),
        connector_configs=config.get("CONNECTOR_CONFIGS") or {},
        context=config.get("CONTEXT") or {},
        sources=[workflow_source()],
    )


def engine() -> WorkflowEngine:
    """This process's engine (built on first use)."""
    global _engine
    with _lock:
        if _engine is None:
            _engine = _build()
        return _engine


def handle_event(item: Any) -> list[str]:
    """The ``headrace.events`` handler: starts the runs an event matches."""
    return engine().handle_event(item)


def handle_run(item: Any) -> str:
    """The ``headrace.workflow_runs`` handler: runs (or resumes) one run."""
    return engine().handle_run(item)


def reset() -> None:
    """Forgets the engine and closes its store (settings changed, tests)."""
    global _engine
    with _lock:
        built, _engine = _engine, None
    if built is not None:
        close = getattr(built.store, "close", None)
        if close is not None:
            close()
