"""Worker hooks: ``item_started``, ``item_completed``, ``item_failed``, ``item_retried``.

Receivers are called as ``receiver(item=..., worker_id=..., error=...)`` (``error`` for
failed/retried items). Connect globally here, or on one worker with ``OutboxWorker.connect``.
A receiver that raises is logged and never stops the worker.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any

__all__ = ["ITEM_EVENTS", "Signal", "item_completed", "item_failed", "item_retried", "item_started"]

log = logging.getLogger("headrace.signals")

Receiver = Callable[..., Any]


class Signal:
    """A named hook point with a list of receivers."""

    def __init__(self, name: str) -> None:
        self.name = name
        self._receivers: list[Receiver] = []
        self._lock = threading.Lock()

    def connect(self, receiver: Receiver) -> Receiver:
        """Adds ``receiver`` (usable as a decorator); connecting twice has no effect."""
        with self._lock:
            if receiver not in self._receivers:
                self._receivers.append(receiver)
        return receiver

    def disconnect(self, receiver: Receiver) -> None:
        with self._lock:
            if receiver in self._receivers:
                self._receivers.remove(receiver)

    @property
    def receivers(self) -> tuple[Receiver, ...]:
        return tuple(self._receivers)

    def send(self, **kwargs: Any) -> None:
        """Calls every receiver; a receiver's exception is logged, not raised."""
        for receiver in self._receivers:
            try:
                receiver(**kwargs)
            except Exception:
                log.exception("receiver %r of signal %s raised", receiver, self.name)

    def __repr__(self) -> str:
        return f"Signal({self.name!r}, receivers={len(self._receivers)})"


item_started = Signal("item_started")
item_completed = Signal("item_completed")
item_failed = Signal("item_failed")
item_retried = Signal("item_retried")

ITEM_EVENTS: dict[str, Signal] = {s.name: s for s in (item_started, item_completed, item_failed, item_retried)}


# -- workflow signals (#13) ------------------------------------------------------------------
# ``event_received(event=)``, ``workflow_started/completed(execution=)``,
# ``workflow_failed(execution=, error=)``, ``step_started(execution=, step=)``,
# ``step_completed(execution=, step=, output=)``, ``step_failed(execution=, step=, error=)``.
# Each fires exactly once per occurrence; a receiver that raises is logged and never breaks the
# run. When ``headrace.django.workflow_signals`` is imported (the Django app does so), the same
# names are also sent as Django signals with ``sender`` = the workflow engine's class.


class WorkflowSignal(Signal):
    """A :class:`Signal` that is also forwarded to its Django twin when Django is in use."""

    def send(self, **kwargs: Any) -> None:
        super().send(**kwargs)
        import sys

        django_twins = sys.modules.get("headrace.django.workflow_signals") or _django_twins()
        if django_twins is not None:
            twin = getattr(django_twins, self.name, None)
            if twin is not None:
                try:
                    twin.send_robust(sender=kwargs.pop("sender", None), **kwargs)
                except Exception:
                    log.exception("forwarding signal %s to Django failed", self.name)


def _django_twins() -> Any:
    """Imports the Django twins when Django is set up with the ``headrace.django`` app."""
    import sys

    if "django.apps" not in sys.modules:
        return None
    try:
        from django.apps import apps  # type: ignore[import-untyped,import-not-found,unused-ignore]

        if not apps.ready or not apps.is_installed("headrace.django"):
            return None
        import importlib

        return importlib.import_module("headrace.django.workflow_signals")
    except Exception:
        return None


event_received = WorkflowSignal("event_received")
workflow_started = WorkflowSignal("workflow_started")
workflow_completed = WorkflowSignal("workflow_completed")
workflow_failed = WorkflowSignal("workflow_failed")
step_started = WorkflowSignal("step_started")
step_completed = WorkflowSignal("step_completed")
step_failed = WorkflowSignal("step_failed")

WORKFLOW_EVENTS: dict[str, Signal] = {
    s.name: s
    for s in (
        event_received,
        workflow_started,
        workflow_completed,
        workflow_failed,
        step_started,
        step_completed,
        step_failed,
    )
}

__all__ += [
    "WORKFLOW_EVENTS",
    "WorkflowSignal",
    "event_received",
    "step_completed",
    "step_failed",
    "step_started",
    "workflow_completed",
    "workflow_failed",
    "workflow_started",
]
