"""``OutboxWorker``: the Rust claim loop dispatching outbox items to Python handlers.

Handlers are plain callables ``handler(item)`` (sync or ``async def``) or
:class:`QueuedHandler` instances/classes such as :class:`~headrace.integrations.QueuedClient`
(called as ``run(payload)`` with the handler's own retry settings). A handler that returns
completes the item; one that raises an exception whose ``retryable`` is false
(``IngestRejected``, …) dead-letters it at once; any other exception retries it with backoff
until its attempts run out. Items of a topic without a handler are dead-lettered with a reason,
never dropped.
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
from typing import Any

from headrace import telemetry
from headrace._core import HandlerOutcome, OutboxItem, StopFlag, WorkerCore, WorkerReport
from headrace.errors import ConfigError, describe, is_retryable
from headrace.outbox import OutboxStore, RetryPolicy
from headrace.signals import ITEM_EVENTS, Signal

__all__ = ["BRIDGE_TOPIC", "OutboxWorker", "QueuedHandler", "WorkerReport", "unclaimed_topics"]

log = logging.getLogger("headrace.worker")

#: The topic of bridge schedule items (:mod:`headrace.integrations.bridges`): a worker leaves
#: them alone unless it routes the topic itself.
BRIDGE_TOPIC = "headrace.bridge"


def unclaimed_topics(routes: Mapping[str, object], exclude_topics: Iterable[str] = ()) -> list[str]:
    """The topics a worker never claims: the caller's, plus the bridge schedules unless a handler
    is routed to them (``run_due_bridges`` runs those; they are never dispatched as work)."""
    return [*exclude_topics, *([] if BRIDGE_TOPIC in routes else [BRIDGE_TOPIC])]


class QueuedHandler:
    """What the worker dispatches a topic to when the handler is not a plain callable: an object
    (or a class, instantiated once) that names its topic and retry policy and runs one payload.
    The worker owns this contract; :class:`~headrace.integrations.QueuedClient` implements it, so
    the worker never imports the integrations layer above it."""

    def run(self, payload: Any) -> Any:
        """Performs one unit of queued work."""
        raise NotImplementedError(f"{type(self).__name__} must implement run(payload)")

    @classmethod
    def topic_name(cls) -> str:
        """The outbox topic this handler's items travel on."""
        raise NotImplementedError(f"{cls.__name__} must implement topic_name()")

    @classmethod
    def retry_policy(cls) -> RetryPolicy:
        """How often, and how far apart, this handler's items are tried."""
        raise NotImplementedError(f"{cls.__name__} must implement retry_policy()")


Handler = Callable[[OutboxItem], Any]
HandlerSpec = Handler | QueuedHandler | type[QueuedHandler]

COMPLETED = HandlerOutcome.completed()
NOT_STARTED = HandlerOutcome.not_started()


def default_worker_id() -> str:
    return f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"


class _Route:
    """How one topic's items are handled."""

    def __init__(self, call: Callable[[OutboxItem], Any], retry: RetryPolicy | None, name: str) -> None:
        self.call = call
        self.retry = retry
        self.name = name


def _route(spec: HandlerSpec) -> _Route:
    if isinstance(spec, type) and issubclass(spec, QueuedHandler):
        spec = spec()
    if isinstance(spec, QueuedHandler):
        client = spec
        return _Route(lambda item: client.run(item.payload), client.retry_policy(), type(client).__qualname__)
    if callable(spec):
        return _Route(spec, None, getattr(spec, "__qualname__", repr(spec)))
    raise ConfigError(f"handler {spec!r} is neither callable nor a QueuedClient")


def _routes(
    handlers: Mapping[str, HandlerSpec] | Iterable[QueuedHandler | type[QueuedHandler]],
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
        if not (isinstance(client, QueuedHandler) or (isinstance(client, type) and issubclass(client, QueuedHandler))):
            raise ConfigError(f"a handler list may hold only QueuedClients, got {client!r}; use a dict for callables")
        topic = client.topic_name()
        if topic in routes:
            raise ConfigError(f"two handlers for topic {topic!r}")
        routes[topic] = _route(client)
    return routes


def _failure(exc: BaseException) -> HandlerOutcome:
    """The outcome of a handler that raised ``exc``: the core's description and retry rule, and
    the exception's ``retry_after`` seconds when it carries a usable one (the core applies it on
    the store's clock). Never raises: an exception whose attributes cannot be read still retries
    its item, with its type as the error."""
    if not isinstance(exc, Exception):
        # KeyboardInterrupt, SystemExit, …: the item was interrupted, not refused.
        return HandlerOutcome.failed(f"interrupted by {describe(exc)}", True)
    try:
        retry_after = getattr(exc, "retry_after", None)
        seconds: float | None = None
        if isinstance(retry_after, int | float) and not isinstance(retry_after, bool):
            if 0 <= retry_after <= _MAX_RETRY_AFTER:
                seconds = float(retry_after)
        return HandlerOutcome.failed(describe(exc), is_retryable(exc), seconds)
    except Exception as unreadable:
        log.warning("could not read the %s a handler raised: %s", type(exc).__qualname__, describe(unreadable))
        return HandlerOutcome.failed(f"{type(exc).__qualname__} (its details could not be read)", True)


#: ``retry_after`` beyond this (seconds, 100 years) is ignored: the retry policy decides.
_MAX_RETRY_AFTER = 100 * 365.25 * 86_400


class OutboxWorker:
    """Claims batches from ``store`` and dispatches each item to the handler of its topic."""

    def __init__(
        self,
        store: OutboxStore,
        handlers: Mapping[str, HandlerSpec] | Sequence[QueuedHandler | type[QueuedHandler]],
        *,
        worker_id: str | None = None,
        batch_size: int = 100,
        concurrency: int = 1,
        poll_interval: float = 1.0,
        retry: RetryPolicy | None = None,
        reaper_interval: float | None = 60.0,
        state: Any = None,
        topics: Sequence[str] | None = None,
        exclude_topics: Sequence[str] = (),
        handler_timeout: float | None = None,
        stop_grace: float = 10.0,
    ) -> None:
        """``handler_timeout``: a batch whose handlers run longer is given up on: its leases
        are no longer renewed, so another worker may take its items once they lapse (a late
        acknowledgement then fails with ``LeaseLost``). ``stop_grace``: after a stop, how long
        a running handler may still take before its batch is given up on the same way."""
        self._routes = _routes(handlers)
        self._state = state
        self._signals: dict[str, Signal] = {name: Signal(name) for name in ITEM_EVENTS}
        self._local = threading.local()
        self.worker_id = worker_id or default_worker_id()
        self._settled_on = False
        #: A KeyboardInterrupt/SystemExit a handler raised: the worker stops, then re-raises it.
        self._interrupt: BaseException | None = None
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
            exclude_topics=unclaimed_topics(self._routes, exclude_topics),
            retry_by_topic={t: r.retry for t, r in self._routes.items() if r.retry is not None},
            handler_timeout=handler_timeout,
            stop_grace=stop_grace,
        )
        telemetry.register_worker(self)

    # -- running -----------------------------------------------------------------------------

    def run(self) -> WorkerReport:
        """Processes items until :meth:`stop`, SIGINT or SIGTERM; stops gracefully (in-flight items
        finish, unstarted ones go back). A second signal raises KeyboardInterrupt at once."""
        restore = self._install_signal_handlers()
        try:
            log.info("worker %s started (topics: %s)", self.worker_id, ", ".join(sorted(self._routes)) or "none")
            return self._reraise(self._core.run())
        finally:
            restore()
            log.info("worker %s stopped", self.worker_id)

    def run_until_empty(self, timeout: float | None = None) -> WorkerReport:
        """Drains every due item (stopping gracefully after ``timeout`` seconds); returns a report."""
        return self._reraise(self._core.run_until_empty(timeout))

    async def arun_until_empty(self, timeout: float | None = None) -> WorkerReport:
        return self._reraise(await self._core.arun_until_empty(timeout))

    async def arun(self) -> WorkerReport:
        return self._reraise(await self._core.arun())

    def _reraise(self, report: WorkerReport) -> WorkerReport:
        """A handler's KeyboardInterrupt/SystemExit stopped the worker gracefully (the items
        before it settled, those after it went back to pending); it is raised now."""
        interrupt, self._interrupt = self._interrupt, None
        if interrupt is not None:
            raise interrupt
        return report

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
        received = []

        def request_stop(signum: int, _frame: object) -> None:
            received.append(signum)
            if len(received) > 1:
                # A second signal: stop waiting for in-flight items (their leases expire).
                raise KeyboardInterrupt(f"second {signal.Signals(signum).name}: exiting now")
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

    def _dispatch(self, items: list[OutboxItem], stopping: StopFlag) -> list[HandlerOutcome]:
        # Where items end up is reported back only while someone listens (hooks or records).
        wants_settled = self._state is not None or any(
            self._listeners(e) for e in ("item_completed", "item_failed", "item_retried")
        )
        if wants_settled != self._settled_on:
            self._core.set_settled(self._settled if wants_settled else None)
            self._settled_on = wants_settled
        announce = self._listeners("item_started")
        outcomes: list[HandlerOutcome] = [NOT_STARTED] * len(items)
        awaiting: list[tuple[int, Any]] = []
        for index, item in enumerate(items):
            if stopping:
                break
            route = self._routes.get(item.topic)
            if self._state is not None:
                self._record_start(item, route.name if route else None)
            if route is None:
                known = ", ".join(sorted(self._routes)) or "none"
                outcomes[index] = HandlerOutcome.failed(
                    f"no handler for topic {item.topic!r} (handled: {known})", False
                )
                continue
            if announce:
                self._emit("item_started", item=item)
            try:
                result = route.call(item)
            except BaseException as exc:
                outcomes[index] = _failure(exc)
                self._record_end(item, exc)
                if self._interrupted(exc):
                    break  # the items after it were never handed over: back to pending
                continue
            if inspect.isawaitable(result):
                awaiting.append((index, result))
            else:
                outcomes[index] = COMPLETED
                self._record_end(item, None, result)
        if awaiting:
            results = self._loop().run_until_complete(_gather([aw for _, aw in awaiting]))
            for (index, _), (ok, result) in zip(awaiting, results, strict=True):
                if ok:
                    outcomes[index] = COMPLETED
                    self._record_end(items[index], None, result)
                else:
                    outcomes[index] = _failure(result)
                    self._record_end(items[index], result)
                    self._interrupted(result)
        return outcomes

    def _interrupted(self, exc: BaseException) -> bool:
        """Whether ``exc`` (KeyboardInterrupt, SystemExit, …) must stop the worker: it is
        kept, to be raised once the worker has stopped and settled this batch."""
        if isinstance(exc, Exception):
            return False
        if self._interrupt is None:
            self._interrupt = exc
        log.warning("worker %s: a handler raised %s; stopping", self.worker_id, type(exc).__name__)
        self._core.stop()
        return True

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

        # The claim time tells executions apart: `requeue` resets `attempts`, so the attempt
        # number alone would name a requeued run like the finished one before it.
        claimed = round(item.updated_at.timestamp() * 1_000_000)
        return Invocation(
            f"outbox:{item.topic}",
            {"item_id": item.id, "attempt": item.attempts},
            invocation_id=f"outbox-item-{item.id}-attempt-{item.attempts}-claim-{claimed}",
        )

    # A record that cannot be written (the state database is down, a background write failed,
    # an exception cannot be stored) is logged at ERROR, never raised: the records describe the
    # work, and failing them must not fail (and re-run) the items of the batch.

    def _record_start(self, item: OutboxItem, handler: str | None) -> None:
        from headrace.state import InvocationStatus

        try:
            invocation = self._invocation(item)
            self._state.upsert_invocation(invocation)
            self._state.add_history(
                invocation, InvocationStatus.RUNNING, {"worker_id": self.worker_id, "handler": handler}
            )
        except Exception as exc:
            self._unrecorded(item, "its start", exc)

    def _record_end(self, item: OutboxItem, exc: BaseException | None, result: Any = None) -> None:
        if self._state is None:
            return
        invocation = self._invocation(item)
        try:
            if exc is not None:
                self._state.set_exception(invocation, exc)
                return
            try:
                self._state.set_result(invocation, result)
            except ConfigError:
                self._state.set_result(invocation, repr(result))
        except Exception as unrecordable:  # the store is down, or str()/pickling of exc raises
            self._unrecorded(item, "its outcome", unrecordable)

    def _record_settled(self, item: OutboxItem, settled: str) -> None:
        from headrace.state import InvocationStatus

        status = {
            "completed": InvocationStatus.SUCCESS,
            "retried": InvocationStatus.RETRY,
            "failed": InvocationStatus.FAILED,
        }[settled]
        try:
            self._state.add_history(self._invocation(item), status, {"worker_id": self.worker_id})
        except Exception as exc:
            self._unrecorded(item, f"its status {settled}", exc)

    def _unrecorded(self, item: OutboxItem, what: str, exc: BaseException) -> None:
        log.error(
            "worker %s: item %s: %s was not recorded in the state backend: %s",
            self.worker_id,
            item.id,
            what,
            describe(exc),
        )


async def _gather(awaitables: list[Any]) -> list[tuple[bool, Any]]:
    """``(True, result)`` or ``(False, exception)`` for each awaitable; never raises, even for
    KeyboardInterrupt or SystemExit (which ``gather(return_exceptions=True)`` lets through)."""

    async def settle(awaitable: Any) -> tuple[bool, Any]:
        try:
            return True, await awaitable
        except BaseException as exc:
            return False, exc

    return list(await asyncio.gather(*(settle(aw) for aw in awaitables)))
