"""Bridges: :class:`BridgeImpl` and :func:`run_due_bridges`, which runs each due bridge once."""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any, ClassVar

from headrace.errors import ConfigError, LeaseLost, describe, is_retryable
from headrace.integrations.descriptors import IntegrationImpl
from headrace.integrations.stores import default_store
from headrace.outbox import OutboxStore
from headrace.worker import BRIDGE_TOPIC

log = logging.getLogger("headrace.integrations")

#: Bridges recur forever: their outbox item is never dead-lettered for running too often.
_BRIDGE_MAX_ATTEMPTS = 2**31 - 1


class BridgeImpl(IntegrationImpl):
    """Base descriptor for an inbound bridge: it pulls data in on a schedule.

    Set ``interval_seconds`` (or a 5-field cron ``schedule``) and implement :meth:`sync`, or set
    ``backend`` to a policy-runner ``Backend`` class so one integration serves both.
    The bridge's sync state (``next_sync_at``, last run) lives in the outbox store.
    """

    category = "bridge"
    interval_seconds: ClassVar[float | None] = None
    schedule: ClassVar[str | None] = None
    backend: ClassVar[type | None] = None
    #: Policy config and scope passed to ``backend`` (package/schedule are filled in).
    backend_config: ClassVar[Mapping[str, Any]] = {}
    backend_scope: ClassVar[Any] = None
    #: Outbox topic of the chunks a ``backend`` bridge produces.
    entities_topic: ClassVar[str] = "headrace.entities"
    #: Where the ``backend``'s runs are recorded (a ``StateBackend`` or URL; None: in memory).
    state: Any = None
    #: The outbox a ``backend`` bridge delivers into; ``run_due_bridges`` sets it.
    store: OutboxStore | None = None

    @property
    def bridge(self) -> Any:
        """The concrete bridge record this implementation is bound to."""
        return self.integration

    @property
    def bridge_key(self) -> str:
        """Identity of this bridge's schedule: the registry key plus the record's ``pk``/``id``."""
        record_id = getattr(self.integration, "pk", None) or getattr(self.integration, "id", None)
        return self.registry_key() if record_id is None else f"{self.registry_key()}:{record_id}"

    def next_sync_after(self, moment: datetime) -> datetime:
        """When the bridge is next due after ``moment``."""
        if self.schedule:
            from headrace._core import next_cron_time

            return next_cron_time(self.schedule, moment)
        interval = self.interval_seconds
        if isinstance(interval, int | float) and not isinstance(interval, bool) and interval > 0:
            try:
                return moment + timedelta(seconds=interval)
            except (OverflowError, ValueError) as exc:
                raise ConfigError(
                    f"{type(self).__name__}.interval_seconds={interval!r} is too large: the next run "
                    f"would fall past year 9999 ({exc})"
                ) from None
        raise ConfigError(
            f"{type(self).__name__} needs interval_seconds > 0 or a cron schedule, got interval_seconds={interval!r}"
        )

    def sync(self) -> Any:
        """Pulls data in once. The default runs ``backend`` through the policy runner into
        the outbox ``run_due_bridges`` was given (topic ``entities_topic``) and returns the run."""
        if self.backend is None:
            raise NotImplementedError(f"{type(self).__name__} must implement sync() or set backend")
        from headrace.runner import OutboxSink, run_backend_once

        store = self.store or default_store()
        return run_backend_once(
            self.backend,
            dict(self.backend_config),
            name=self.bridge_key,
            scope=self.backend_scope,
            sink=OutboxSink(store, topic=self.entities_topic),
            state=self.state,
        )


@dataclass(frozen=True)
class BridgeRun:
    """One bridge run by :func:`run_due_bridges`."""

    bridge_key: str
    ok: bool
    error: str | None
    #: None for a bridge whose schedule is invalid (it is not scheduled at all).
    next_sync_at: datetime | None
    result: Any = None


@dataclass(frozen=True)
class BridgeState:
    """A bridge's schedule as stored."""

    bridge_key: str
    next_sync_at: datetime | None
    last_run_at: datetime | None
    last_error: str | None
    runs: int
    running: bool


def _bridge_dedupe_key(bridge: BridgeImpl) -> str:
    return f"bridge:{bridge.bridge_key}"


def bridge_state(store: OutboxStore, bridge: BridgeImpl) -> BridgeState | None:
    """Where ``bridge`` stands, or None if it was never scheduled in ``store``."""
    item_id = store.enqueue(
        BRIDGE_TOPIC,
        {"bridge": bridge.bridge_key},
        dedupe_key=_bridge_dedupe_key(bridge),
        max_attempts=_BRIDGE_MAX_ATTEMPTS,
    )
    item = store.get(item_id)
    ran = item.attempts > 0
    return BridgeState(
        bridge_key=bridge.bridge_key,
        next_sync_at=item.run_at if item.status == "pending" else None,
        last_run_at=item.updated_at if ran else None,
        last_error=(item.last_error or None) if ran else None,
        runs=item.attempts,
        running=item.status == "processing",
    )


def run_due_bridges(
    bridges: Iterable[BridgeImpl],
    *,
    store: OutboxStore | None = None,
    now: datetime | None = None,
    worker_id: str | None = None,
) -> list[BridgeRun]:
    """Runs every bridge whose ``next_sync_at`` has passed, once, and advances it.

    A bridge never seen before is due at once. Each bridge's schedule is a recurring outbox item
    (topic ``headrace.bridge``, one per bridge key): claiming it is exclusive, so two processes
    calling this at the same moment never run the same bridge twice. A bridge that raises is
    recorded (``last_error``) and still advanced to its next time. ``now`` (default: the current
    time) decides what is due. A bridge whose schedule is invalid (a bad cron expression, an
    interval too large) is reported failed with ``next_sync_at=None`` and never claimed, so it
    cannot hold the others up.
    """
    target = store or default_store()
    moment = now or datetime.now(timezone.utc)
    if moment.tzinfo is None:
        raise ConfigError("now must be a timezone-aware datetime")
    worker = worker_id or f"bridges-{os.getpid()}-{threading.get_ident()}"
    by_key: dict[str, tuple[BridgeImpl, datetime]] = {}
    runs: list[BridgeRun] = []
    for scheduled in bridges:
        try:
            next_at = scheduled.next_sync_after(moment)
        except Exception as exc:
            reason = describe(exc)
            log.error("bridge %s has an invalid schedule and is skipped: %s", scheduled.bridge_key, reason)
            runs.append(BridgeRun(scheduled.bridge_key, False, reason, None))
            continue
        by_key[_bridge_dedupe_key(scheduled)] = (scheduled, next_at)
        target.enqueue(
            BRIDGE_TOPIC,
            {"bridge": scheduled.bridge_key},
            dedupe_key=_bridge_dedupe_key(scheduled),
            max_attempts=_BRIDGE_MAX_ATTEMPTS,
            run_at=moment,
        )
    claimed = target.claim_batch(worker, 10_000, topics=[BRIDGE_TOPIC], due_by=moment)
    for position, item in enumerate(claimed):
        found = by_key.get(item.dedupe_key or "")
        if found is None:
            target.release([item.id], worker)  # another caller's bridge: leave it to them
            continue
        bridge, next_at = found
        if bridge.store is None:
            bridge.store = target
        try:
            result, error = bridge.sync(), None
        except Exception as exc:
            result, error = None, describe(exc)
            log.warning("bridge %s failed (retryable=%s): %s", bridge.bridge_key, is_retryable(exc), error)
        except BaseException:
            # KeyboardInterrupt, SystemExit: the claimed bridges go back to pending, not stuck.
            target.release([i.id for i in claimed[position:]], worker)
            raise
        try:
            target.mark_retry(item.id, worker, next_at, error or "")
        except LeaseLost:
            log.warning("bridge %s ran longer than the lease; another process may run it again", bridge.bridge_key)
        runs.append(BridgeRun(bridge.bridge_key, error is None, error, next_at, result))
    return runs
