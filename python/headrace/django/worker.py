"""The process ``manage.py headrace_worker`` runs: the outbox worker, the policy runner and due
bridges, with a heartbeat the health check reads."""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from headrace.django import db
from headrace.django.conf import get_settings
from headrace.django.handlers import configured_handlers
from headrace.integrations import BridgeImpl, import_dotted, registry, run_due_bridges
from headrace.worker import OutboxWorker

__all__ = ["HEARTBEAT_PREFIX", "DjangoWorker", "WorkerOptions", "heartbeats"]

log = logging.getLogger("headrace.django.worker")

#: App-info ids of worker heartbeats in the state backend.
HEARTBEAT_PREFIX = "headrace.worker:"


@dataclass
class WorkerOptions:
    topics: Sequence[str] | None = None
    exclude_topics: Sequence[str] = ()
    concurrency: int | None = None
    batch_size: int | None = None
    worker_id: str | None = None
    policies: bool = True
    bridges: bool = True


class DjangoWorker:
    """Builds the worker from ``HEADRACE`` and runs it until stopped (or drained, in burst mode)."""

    def __init__(self, options: WorkerOptions) -> None:
        settings = get_settings()
        self.settings = settings
        self.alias = db.outbox_alias()
        registry.load_paths(settings.INTEGRATIONS)
        self.store = db.open_store(self.alias)
        self.state = db.open_state(self.alias) if settings.STATE else None
        from headrace.django.policies import RUN_NOW_TOPIC

        handlers = configured_handlers()
        handlers.setdefault(RUN_NOW_TOPIC, self._run_policy_now)
        self.worker = OutboxWorker(
            self.store,
            handlers,
            worker_id=options.worker_id,
            batch_size=options.batch_size or settings.BATCH_SIZE,
            concurrency=options.concurrency or settings.CONCURRENCY,
            poll_interval=settings.POLL_INTERVAL,
            reaper_interval=settings.REAPER_INTERVAL,
            state=self.state,
            topics=list(options.topics) if options.topics else None,
            exclude_topics=list(options.exclude_topics),
        )
        self.bridges: list[BridgeImpl] = [import_dotted(path)() for path in settings.BRIDGES] if options.bridges else []
        self.policies = settings.POLICIES if options.policies else None
        # Durable policies (admin, policy API) live on the state backend.
        self.durable = bool(options.policies and self.state is not None)
        self.manager: Any = None
        self.policy_sync: Any = None
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []

    @property
    def worker_id(self) -> str:
        return self.worker.worker_id

    def _start_background(self) -> None:
        if self.policies or self.durable:
            from headrace.runner import OutboxSink, PolicyManager

            self.manager = PolicyManager(state=self.state, sink=OutboxSink(self.store))
            if self.policies:
                self.manager.start_policies(self.policies)
        loops = [self._heartbeat_loop, self._bridges_loop]
        if self.durable:
            from headrace.django.policies import DjangoPolicies, PolicySync

            self.policy_sync = PolicySync(self.manager, DjangoPolicies(self.state), static=set(self.manager.policies))
            loops.append(self._policies_loop)
        for target in loops:
            thread = threading.Thread(target=target, name=f"headrace-{target.__name__}", daemon=True)
            thread.start()
            self._threads.append(thread)

    def _heartbeat(self) -> None:
        if self.state is None:
            return
        from headrace.state import AppInfo

        self.state.store_app_info(
            AppInfo(
                app_id=HEARTBEAT_PREFIX + self.worker_id,
                module="headrace.django",
                metadata={"heartbeat": datetime.now(timezone.utc).isoformat()},
            )
        )

    def _heartbeat_loop(self) -> None:
        interval = max(self.settings.HEARTBEAT_MAX_AGE / 3, 0.05)
        while not self._stop.is_set():
            try:
                self._heartbeat()
            except Exception as exc:  # the database may be restarting: keep beating
                log.warning("heartbeat failed: %s", exc)
            self._stop.wait(interval)

    def _policies_loop(self) -> None:
        interval = max(self.settings.POLL_INTERVAL, 0.5)
        while not self._stop.is_set():
            try:
                self.policy_sync.sync()
            except Exception as exc:  # the database may be restarting: keep following
                log.warning("following the stored policies failed: %s", exc)
            self._stop.wait(interval)

    def _run_policy_now(self, item: Any) -> dict[str, Any]:
        """Handles ``headrace.policy.run_now`` items: runs the policy on this worker's manager
        when it runs it, else once on a throwaway manager (burst mode, or a worker that does not
        run policies); the run is recorded either way."""
        from headrace.errors import NotFoundError
        from headrace.orb.policies import resolve_env
        from headrace.runner import OutboxSink, PolicyManager

        name = str((item.payload or {}).get("policy", ""))
        if self.manager is not None and name in self.manager.policies:
            run = self.manager.run_now(name)
        else:
            from headrace.django.policies import DjangoPolicies

            written = DjangoPolicies(self.state).get(name) if self.state is not None else None
            if written is None:
                raise NotFoundError(f"policy {name!r} is not stored")
            once = PolicyManager(state=self.state, sink=OutboxSink(self.store))
            try:
                once.start_policies({"policies": {name: resolve_env(written)}}, schedule=False)
                run = once.run_now(name)
            finally:
                once.stop()
        return {"run_id": run.id, "status": str(run.status), "entity_count": run.entity_count}

    def run_bridges_once(self) -> None:
        if self.bridges:
            run_due_bridges(self.bridges, store=self.store, worker_id=self.worker_id)

    def _bridges_loop(self) -> None:
        while not self._stop.is_set():
            try:
                self.run_bridges_once()
            except Exception as exc:
                log.warning("running due bridges failed: %s", exc)
            self._stop.wait(max(self.settings.POLL_INTERVAL, 1.0))

    def run(self) -> Any:
        """Runs until SIGTERM/SIGINT (in-flight items finish; a second signal exits) or stop()."""
        self._start_background()
        try:
            return self.worker.run()
        finally:
            self.close()

    def run_burst(self) -> Any:
        """Runs due bridges once, then drains every due item and returns the report."""
        try:
            self._heartbeat()
            self.run_bridges_once()
            return self.worker.run_until_empty()
        finally:
            self.close()

    def stop(self) -> None:
        self.worker.stop()

    def close(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=5)
        if self.manager is not None:
            self.manager.stop()
        if self.state is not None and not self.state.closed:
            self.state.close()
        close = getattr(self.store, "close", None)
        if close is not None:
            close()


def heartbeats(alias: str | None = None) -> dict[str, datetime]:
    """Worker id → last heartbeat, from the state backend."""
    state = db.open_state(alias)
    try:
        beats = {}
        for app_id, info in state.get_all_app_infos().items():
            if app_id.startswith(HEARTBEAT_PREFIX):
                stamp = (info.metadata or {}).get("heartbeat")
                if stamp:
                    beats[app_id[len(HEARTBEAT_PREFIX) :]] = datetime.fromisoformat(stamp)
        return beats
    finally:
        state.close()
