"""OpenTelemetry export of worker metrics, active when ``opentelemetry`` is installed.

Every ``OutboxWorker`` registers itself here; the meter ``headrace`` then reports, per worker
and topic, the items claimed/completed/retried/failed and the claim and handler time, through
whatever ``MeterProvider`` the application configured. Without OpenTelemetry nothing happens and
``OutboxWorker.metrics()`` (Prometheus text) is still there.
"""

from __future__ import annotations

import logging
import threading
import weakref
from collections.abc import Iterator
from typing import Any

__all__ = ["available", "register_policy_manager", "register_worker"]

_workers: weakref.WeakSet[Any] = weakref.WeakSet()
_managers: weakref.WeakSet[Any] = weakref.WeakSet()
_lock = threading.Lock()
_instruments: list[Any] = []
#: Whether ``opentelemetry.metrics`` imports, found out once per process (see :func:`available`).
_available: bool | None = None
_probe_lock = threading.Lock()


def available() -> bool:
    """Whether OpenTelemetry is installed. The import is tried once per process, under a lock:
    trying it on every worker construction, from several threads, intermittently made importlib
    raise ``KeyError``. An installation that fails to import for any reason counts as absent
    (logged once), never as an error of the worker being built."""
    global _available
    if _available is not None:
        return _available
    with _probe_lock:
        if _available is None:
            try:
                import opentelemetry.metrics  # noqa: F401
            except ImportError:
                _available = False
            except Exception as exc:
                logging.getLogger("headrace.telemetry").warning(
                    "OpenTelemetry is installed but failed to import (%s: %s); metrics are not exported",
                    type(exc).__name__,
                    exc,
                )
                _available = False
            else:
                _available = True
    return _available


def register_worker(worker: Any) -> bool:
    """Reports ``worker``'s metrics through OpenTelemetry; False when it is not installed."""
    if not available():
        return False
    with _lock:
        _workers.add(worker)
        if not _instruments:
            _create_instruments()
    return True


def register_policy_manager(manager: Any) -> bool:
    """Reports ``manager``'s policy executions and backend run time; False without OpenTelemetry."""
    if not available():
        return False
    with _lock:
        _managers.add(manager)
        if not _instruments:
            _create_instruments()
    return True


def _create_instruments() -> None:
    from opentelemetry import metrics
    from opentelemetry.metrics import CallbackOptions, Observation

    meter = metrics.get_meter("headrace")

    def counts(name: str) -> Any:
        def observe(_options: CallbackOptions) -> Iterator[Observation]:
            for worker in list(_workers):
                topics, _claim, _handler = worker._core.metrics_snapshot()
                for topic, values in topics.items():
                    yield Observation(values[name], {"worker_id": worker.worker_id, "topic": topic})

        return observe

    def claim_seconds(_options: CallbackOptions) -> Iterator[Observation]:
        for worker in list(_workers):
            _topics, (_count, total), _handler = worker._core.metrics_snapshot()
            yield Observation(total, {"worker_id": worker.worker_id})

    def handler_seconds(_options: CallbackOptions) -> Iterator[Observation]:
        for worker in list(_workers):
            _topics, _claim, handler = worker._core.metrics_snapshot()
            for topic, (_count, total) in handler.items():
                yield Observation(total, {"worker_id": worker.worker_id, "topic": topic})

    def policy_runs(_options: CallbackOptions) -> Iterator[Observation]:
        for manager in list(_managers):
            for policy, completed, failed, _skipped, _seconds in manager.metrics_snapshot():
                yield Observation(completed, {"policy": policy, "status": "completed"})
                yield Observation(failed, {"policy": policy, "status": "failed"})

    def policy_ticks_skipped(_options: CallbackOptions) -> Iterator[Observation]:
        for manager in list(_managers):
            for policy, _completed, _failed, skipped, _seconds in manager.metrics_snapshot():
                yield Observation(skipped, {"policy": policy})

    def policy_run_time(_options: CallbackOptions) -> Iterator[Observation]:
        for manager in list(_managers):
            for policy, _completed, _failed, _skipped, seconds in manager.metrics_snapshot():
                yield Observation(seconds, {"policy": policy})

    _instruments.append(
        meter.create_observable_counter(
            "headrace.policy.runs", callbacks=[policy_runs], unit="{run}", description="Policy runs by outcome"
        )
    )
    _instruments.append(
        meter.create_observable_counter(
            "headrace.policy.ticks_skipped",
            callbacks=[policy_ticks_skipped],
            unit="{tick}",
            description="Schedule ticks skipped because the previous run was still going",
        )
    )
    _instruments.append(
        meter.create_observable_counter(
            "headrace.policy.run.time", callbacks=[policy_run_time], unit="s", description="Backend run time"
        )
    )
    for name in ("claimed", "completed", "retried", "failed"):
        _instruments.append(
            meter.create_observable_counter(
                f"headrace.outbox.items.{name}",
                callbacks=[counts(name)],
                unit="{item}",
                description=f"Outbox items {name} by the worker",
            )
        )
    _instruments.append(
        meter.create_observable_counter(
            "headrace.outbox.claim.time", callbacks=[claim_seconds], unit="s", description="Time spent claiming"
        )
    )
    _instruments.append(
        meter.create_observable_counter(
            "headrace.outbox.handler.time", callbacks=[handler_seconds], unit="s", description="Time in handlers"
        )
    )
