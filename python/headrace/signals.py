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
