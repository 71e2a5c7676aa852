"""``OrbWorker``: orb-worker's policy manager on headrace — policies started from validated
documents, run by headrace's ``PolicyManager`` into a Diode sink, and **durable**: every started
policy is stored (as written) with the run store and restarted by :meth:`OrbWorker.restore`.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Mapping
from typing import Any

from headrace.errors import ConfigError
from headrace.orb.models import DiodeConfig, Policy
from headrace.orb.policies import PolicyStore

__all__ = ["OrbWorker", "PolicyExistsError", "PolicyNotFoundError"]

logger = logging.getLogger("headrace.orb")


class PolicyExistsError(ConfigError):
    """A policy of that name is already running (orb-worker answers 409)."""

    code = "policy_exists"


from headrace.runner import PolicyNotFoundError  # noqa: E402  (one class for both layers)


class OrbWorker:
    """Starts, stops and remembers policies (see the module documentation).

    ``state`` is a ``StateBackend`` (the run store and the policy store) or ``None`` (runs and
    policies kept in memory, nothing survives a restart). ``sink`` defaults to a ``DiodeSink``
    built from ``diode``. With ``outbox`` (an ``OutboxStore``) chunks go through the outbox and an
    in-process ``OutboxWorker`` delivers them to the sink, retrying transient failures with
    backoff: delivery survives restarts.
    """

    def __init__(
        self,
        *,
        diode: DiodeConfig | None = None,
        state: Any = None,
        sink: Any = None,
        outbox: Any = None,
        chunk_bytes: int | None = None,
        topic: str = "headrace.diode",
    ) -> None:
        from headrace.orb.diode import DiodeSink
        from headrace.runner import DEFAULT_CHUNK_BYTES, OutboxSink, PolicyManager

        self.diode = diode or DiodeConfig(dry_run=True)
        if sink is None:
            sink = DiodeSink(
                self.diode.target,
                self.diode.client_id,
                self.diode.client_secret,
                app_name_prefix=self.diode.prefix,
                dry_run=self.diode.dry_run,
                dry_run_output_dir=self.diode.dry_run_output_dir,
            )
        self.sink = sink
        self.state = state
        self.outbox = outbox
        self._delivery: Any = None
        runner_sink: Any = sink
        if outbox is not None:
            from headrace.worker import OutboxWorker

            runner_sink = OutboxSink(outbox, topic=topic)
            self._delivery = OutboxWorker(outbox, {topic: sink.handle})
            self._delivery_thread = threading.Thread(
                target=self._delivery.run, name="headrace-orb-delivery", daemon=True
            )
            self._delivery_thread.start()
        self.manager = PolicyManager(state=state, sink=runner_sink, chunk_bytes=chunk_bytes or DEFAULT_CHUNK_BYTES)
        self.store = PolicyStore(state) if state is not None else None
        self.loaded_modules: set[str] = set()
        self.started_at = time.monotonic()
        self._lock = threading.Lock()

    def policies(self) -> list[str]:
        """Names of the running policies."""
        return list(self.manager.policies)

    def start_policy(self, name: str, policy: Policy, written: Mapping[str, Any] | None = None) -> None:
        """Starts ``policy`` as ``name`` and stores it as ``written`` (the policy before
        ``${VAR}`` resolution; default: the validated policy). ``PolicyExistsError`` when a
        policy of that name runs; any other failure leaves nothing started or stored."""
        with self._lock:
            if name in self.manager.policies:
                raise PolicyExistsError(f"policy '{name}' already exists")
            self.manager.start_policies({"policies": {name: policy.model_dump(mode="json")}})
            try:
                if self.store is not None:
                    self.store.save(name, written if written is not None else policy.model_dump(mode="json"))
            except BaseException:
                self.manager.delete_policy(name)
                raise
            self.loaded_modules.add(policy.config.package)

    def delete_policy(self, name: str) -> None:
        """Stops and forgets ``name``; ``PolicyNotFoundError`` when it does not run."""
        with self._lock:
            if name not in self.manager.policies:
                raise PolicyNotFoundError(f"policy '{name}' not found")
            self.manager.delete_policy(name)
            if self.store is not None:
                self.store.delete(name)

    def restore(self) -> list[str]:
        """Restarts every stored policy that is not running; returns the names started. A
        stored policy that no longer validates or loads is logged at ERROR and left stored."""
        if self.store is None:
            return []
        started = []
        for name, written in self.store.all().items():
            if name in self.manager.policies:
                continue
            try:
                policy = self.store.validated(name)
                with self._lock:
                    self.manager.start_policies({"policies": {name: policy.model_dump(mode="json")}})
                    self.loaded_modules.add(policy.config.package)
            except Exception as exc:
                logger.error("stored policy %r could not be restarted: %s", name, exc)
                continue
            started.append(name)
            logger.info("restored policy %r (package %s)", name, written.get("config", {}).get("package"))
        return started

    def uptime_seconds(self) -> int:
        """Seconds since this worker started."""
        return round(time.monotonic() - self.started_at)

    def stop(self, timeout: float = 30.0) -> None:
        """Stops every policy (they stay stored), the delivery worker and the sink's clients."""
        self.manager.stop(timeout)
        if self._delivery is not None:
            self._delivery.stop()
            self._delivery_thread.join(timeout)
        close = getattr(self.sink, "close", None)
        if callable(close):
            close()
