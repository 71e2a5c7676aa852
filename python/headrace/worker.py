"""``OutboxWorker``: the Rust claim loop dispatching outbox items to Python handlers.

Handlers are plain callables ``handler(item)`` (sync or ``async def``) or
:class:`~headrace.integrations.QueuedClient` instances/classes (called as ``run(payload)`` with
the client's own retry settings). A handler that returns completes the item; one that raises an
exception whose ``retryable`` is false (``IngestRejected``, …) dead-letters it at once; any other
exception retries it with backoff until its attempts run out. Items of a topic without a handler
are dead-lettered with a reason, never dropped.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import os
import signal
import socket
import threading
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import datetime, timedelta, timezone
from typing import Any

from headrace import telemetry
from headrace._core import OutboxItem, StopFlag, WorkerCore, WorkerReport
from headrace.errors import ConfigError, is_retryable
from headrace.integrations import BRIDGE_TOPIC, QueuedClient
from headrace.outbox import OutboxStore, RetryPolicy
from headrace.signals import ITEM_EVENTS, Signal

__all__ = ["OutboxWorker", "WorkerReport"]

log = logging.getLogger("headrace.worker")

Handler = Callable[[OutboxItem], Any]
HandlerSpec = Handler | QueuedClient | type[QueuedClient]

COMPLETED = ("completed",)
NOT_STARTED = ("not_started",)


def default_worker_id() -> str:
    return f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"


class _Route:
    """How one topic's items are handled."""

    def __init__(self, call: Callable[[OutboxItem], Any], retry: RetryPolicy | None, name: str) -> None:
        self.call = call
        self.retry = retry
        self.name = name


def _route(spec: HandlerSpec) -> _Route:
    if isinstance(spec, type) and issubclass(spec, QueuedClient):
        spec = spec()
    if isinstance(spec, QueuedClient):
        client = spec
        return _Route(lambda item: client.run(item.payload), client.retry_policy(), type(client).__qualname__)
    if callable(spec):
        return _Route(spec, None, getattr(spec, "__qualname__", repr(spec)))
    raise ConfigError(f"handler {spec!r} is neither callable nor a QueuedClient")


def _routes(
    handlers: Mapping[str, HandlerSpec] | Iterable[QueuedClient | type[QueuedClient]],
) -> dict[str, _Route]:
    if isinstance(handlers, Mapping):
        routes = {}
        for topic, spec in handlers.items():
            if not isinstance(topic, str) or not topic:
                raise ConfigError(f"handler topics must be non-empty strings, got {topic!r}")
            routes[topic] = _route(spec)
        return routes
    routes = {}
    for client in handlers:
        if not (isinstance(client, QueuedClient) or (isinstance(client, type) and issubclass(client, QueuedClient))):
            raise ConfigError(f"a handler list may hold only QueuedClients, got {client!r}; use a dict for callables")
        topic = client.topic_name()
        if topic in routes:
            raise ConfigError(f"two handlers for topic {topic!r}")
        routes[topic] = _route(client)
    return routes


def _failure(exc: BaseException) -> tuple[str, str, bool, datetime | None]:
    retry_after = getattr(exc, "retry_after", None)
    retry_at = None
    if isinstance(retry_after, int | float) and retry_after >= 0:
        retry_at = datetime.now(timezone.utc) + timedelta(seconds=retry_after)
    return ("failed", f"{type(exc).__qualname__}: {exc}", is_retryable(exc), retry_at)


class OutboxWorker:
    """Claims batches from ``store`` and dispatches each item to the handler of its topic."""

    def __init__(
        self,
        store: OutboxStore,
        handlers: Mapping[str, HandlerSpec] | Sequence[QueuedClient | type[QueuedClient]],
        *,
        worker_id: str | None = None,
        batch_size: int = 100,
        concurrency: int = 1,
        poll_interval: float = 1.0,
        retry: RetryPolicy | None = None,
        reaper_interval: float | None = 60.0,
        state: Any = None,
        topics: Sequence[str] | None = None,
    ) -> None:
        self._routes = _routes(handlers)
        self._state = state
        self._signals: dict[str, Signal] = {name: Signal(name) for name in ITEM_EVENTS}
        self._local = threading.local()
        self.worker_id = worker_id or default_worker_id()
        self._settled_on = False
        self._core = WorkerCore(
            store,
            self._dispatch,
            worker_id=self.worker_id,
            batch_size=batch_size,
            concurrency=concurrency,
            poll_interval=poll_interval,
            retry=retry,
            reaper_interval=reaper_interval,
            topics=list(topics) if topics is not None else None,
            # Bridge schedules are run by run_due_bridges, never dispatched as work.
            exclude_topics=[] if BRIDGE_TOPIC in self._routes else [BRIDGE_TOPIC],
            retry_by_topic={t: r.retry for t, r in self._routes.items() if r.retry is not None},
        )
        telemetry.register_worker(self)

    # -- running -----------------------------------------------------------------------------

    def run(self) -> WorkerReport:
        """Processes items until :meth:`stop`, SIGINT or SIGTERM; stops gracefully."""
        restore = self._install_signal_handlers()
        try:
            log.info("worker %s started (topics: %s)", self.worker_id, ", ".join(sorted(self._routes)) or "none")
            return self._core.run()
        finally:
            restore()
            log.info("worker %s stopped", self.worker_id)

    def run_until_empty(self, timeout: float | None = None) -> WorkerReport:
        """Drains every due item (stopping gracefully after ``timeout`` seconds); returns a report."""
        return self._core.run_until_empty(timeout)

    async def arun_until_empty(self, timeout: float | None = None) -> WorkerReport:
        return await self._core.arun_until_empty(timeout)

    async def arun(self) -> WorkerReport:
        return await self._core.arun()

    def stop(self) -> None:
        """Asks the worker to stop: in-flight items finish, unstarted ones go back to pending."""
        self._core.stop()

    def metrics(self) -> str:
        """This worker's metrics in the Prometheus text format."""
        return self._core.metrics()

    def connect(self, event: str, receiver: Callable[..., Any]) -> Callable[..., Any]:
        """Calls ``receiver(item=..., worker_id=..., error=...)`` on ``event`` for this worker."""
        if event not in self._signals:
            raise ConfigError(f"unknown worker event {event!r}: expected one of {', '.join(ITEM_EVENTS)}")
        return self._signals[event].connect(receiver)

    def _install_signal_handlers(self) -> Callable[[], None]:
        if threading.current_thread() is not threading.main_thread():
            return lambda: None
        previous = {}

        def request_stop(signum: int, _frame: object) -> None:
            log.info(
                "worker %s received %s; finishing in-flight items",
                self.worker_id,
                signal.Signals(signum).name,
            )
            self.stop()

        for signum in (signal.SIGINT, signal.SIGTERM):
            previous[signum] = signal.signal(signum, request_stop)

        def restore() -> None:
            for signum, handler in previous.items():
                signal.signal(signum, handler)

        return restore

    # -- dispatch (called by the Rust loop, once per batch, on a worker thread) ----------------

    def _emit(self, event: str, **kwargs: Any) -> None:
        ITEM_EVENTS[event].send(worker_id=self.worker_id, **kwargs)
        self._signals[event].send(worker_id=self.worker_id, **kwargs)

    def _loop(self) -> asyncio.AbstractEventLoop:
        loop = getattr(self._local, "loop", None)
        if loop is None or loop.is_closed():
            loop = self._local.loop = asyncio.new_event_loop()
        return loop

    def _listeners(self, event: str) -> bool:
        return bool(ITEM_EVENTS[event].receivers or self._signals[event].receivers)

    def _dispatch(self, items: list[OutboxItem], stopping: StopFlag) -> list[tuple[Any, ...]]:
        # Where items end up is reported back only while someone listens (hooks or records).
        wants_settled = self._state is not None or any(
            self._listeners(e) for e in ("item_completed", "item_failed", "item_retried")
        )
        if wants_settled != self._settled_on:
            self._core.set_settled(self._settled if wants_settled else None)
            self._settled_on = wants_settled
        announce = self._listeners("item_started")
        outcomes: list[tuple[Any, ...]] = [NOT_STARTED] * len(items)
        awaiting: list[tuple[int, Any]] = []
        for index, item in enumerate(items):
            if stopping:
                break
            route = self._routes.get(item.topic)
            if self._state is not None:
                self._record_start(item, route.name if route else None)
            if route is None:
                known = ", ".join(sorted(self._routes)) or "none"
                outcomes[index] = (
                    "failed",
                    f"no handler for topic {item.topic!r} (handled: {known})",
                    False,
                    None,
                )
                continue
            if announce:
                self._emit("item_started", item=item)
            try:
                result = route.call(item)
            except Exception as exc:
                outcomes[index] = _failure(exc)
                self._record_end(item, exc)
                continue
            if inspect.isawaitable(result):
                awaiting.append((index, result))
            else:
                outcomes[index] = COMPLETED
                self._record_end(item, None, result)
        if awaiting:
            results = self._loop().run_until_complete(_gather([aw for _, aw in awaiting]))
            for (index, _), result in zip(awaiting, results, strict=True):
                if isinstance(result, BaseException):
                    outcomes[index] = _failure(result)
                    self._record_end(items[index], result)
                else:
                    outcomes[index] = COMPLETED
                    self._record_end(items[index], None, result)
        return outcomes

    def _settled(self, rows: list[tuple[OutboxItem, str, str | None]]) -> None:
        for item, settled, error in rows:
            if settled == "released":
                continue
            self._emit(f"item_{settled}", item=item, error=error)
            if self._state is not None:
                self._record_settled(item, settled)

    # -- state backend records (when ``state`` is given) ---------------------------------------

    def _invocation(self, item: OutboxItem) -> Any:
        from headrace.state import Invocation

        return Invocation(
            f"outbox:{item.topic}",
            {"item_id": item.id, "attempt": item.attempts},
            invocation_id=f"outbox-item-{item.id}-attempt-{item.attempts}",
        )

    def _record_start(self, item: OutboxItem, handler: str | None) -> None:
        from headrace.state import InvocationStatus

        invocation = self._invocation(item)
        self._state.upsert_invocation(invocation)
        self._state.add_history(invocation, InvocationStatus.RUNNING, {"worker_id": self.worker_id, "handler": handler})

    def _record_end(self, item: OutboxItem, exc: BaseException | None, result: Any = None) -> None:
        if self._state is None:
            return
        invocation = self._invocation(item)
        if exc is not None:
            self._state.set_exception(invocation, exc)
            return
        try:
            self._state.set_result(invocation, result)
        except ConfigError:
            self._state.set_result(invocation, repr(result))

    def _record_settled(self, item: OutboxItem, settled: str) -> None:
        from headrace.state import InvocationStatus

        status = {
            "completed": InvocationStatus.SUCCESS,
            "retried": InvocationStatus.RETRY,
            "failed": InvocationStatus.FAILED,
        }[settled]
        self._state.add_history(self._invocation(item), status, {"worker_id": self.worker_id})


async def _gather(awaitables: list[Any]) -> list[Any]:
    return await asyncio.gather(*awaitables, return_exceptions=True)
