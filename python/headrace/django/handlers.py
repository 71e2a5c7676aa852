"""The topic → handler map the worker command and ``run_outbox`` dispatch to, and the
per-call Django connection hygiene around each handler."""

from __future__ import annotations

import functools
import inspect
import threading
from collections.abc import Callable, Mapping
from typing import Any

from asgiref.sync import sync_to_async
from django.db import close_old_connections, connections, reset_queries
from django.db.backends.signals import connection_created

from headrace.django.conf import get_settings
from headrace.errors import ConfigError
from headrace.integrations import QueuedClient, import_dotted

__all__ = ["configured_handlers", "with_connection_hygiene"]


# Django's close_old_connections() and reset_queries() walk every alias through asgiref's Local
# (~15 µs a call, three calls per item: the worker's throughput halved with a fast handler).
# Both only act on connections opened on the calling thread, so a handler thread that had none
# before its first call tracks the ones it opens (connection_created fires on the opening thread)
# and closes or clears exactly those; a thread that had some runs Django's own functions.
_thread = threading.local()


def _opened(sender: Any, connection: Any, **kwargs: Any) -> None:
    tracked = getattr(_thread, "tracked", None)
    if tracked is not None and all(conn is not connection for conn in tracked):
        tracked.append(connection)


connection_created.connect(_opened, dispatch_uid="headrace.django.handlers")


def _tracked() -> list[Any] | None:
    """Connections opened on this thread since its first handler call; None when the thread
    had connections before it (Django's own functions run then)."""
    try:
        tracked: list[Any] | None = _thread.tracked
    except AttributeError:
        tracked = None if connections.all(initialized_only=True) else []
        _thread.tracked = tracked
    return tracked


def _close_old_connections() -> None:
    tracked = _tracked()
    if tracked is None:
        close_old_connections()
        return
    for conn in tracked:
        conn.close_if_unusable_or_obsolete()


def _reset_queries() -> None:
    tracked = _tracked()
    if tracked is None:
        reset_queries()
        return
    for conn in tracked:
        conn.queries_log.clear()


def _sync_hygiene(call: Callable[[Any], Any]) -> Callable[[Any], Any]:
    @functools.wraps(call)
    def run(item: Any) -> Any:
        _close_old_connections()
        try:
            return call(item)
        finally:
            _close_old_connections()
            _reset_queries()

    return run


def _async_hygiene(call: Callable[[Any], Any]) -> Callable[[Any], Any]:
    # close_old_connections is async-unsafe: run it on the thread the handler's ORM calls use.
    before = sync_to_async(close_old_connections, thread_sensitive=True)

    @sync_to_async(thread_sensitive=True)
    def after() -> None:
        close_old_connections()
        reset_queries()

    @functools.wraps(call)
    async def run(item: Any) -> Any:
        await before()
        try:
            return await call(item)
        finally:
            await after()

    return run


def with_connection_hygiene(spec: Any) -> Any:
    """Wraps a handler so every call is bracketed by ``close_old_connections()`` (before and
    after, on the thread that runs it) and ``reset_queries()``. ``QueuedClient``s keep their
    own retry settings: their ``run`` is wrapped instead."""
    if isinstance(spec, type) and issubclass(spec, QueuedClient):
        spec = spec()
    if isinstance(spec, QueuedClient):
        run = spec.run
        wrapped = _async_hygiene(run) if inspect.iscoroutinefunction(run) else _sync_hygiene(run)
        spec.run = wrapped  # type: ignore[method-assign,assignment]
        return spec
    if not callable(spec):
        raise ConfigError(f"handler {spec!r} is neither callable nor a QueuedClient")
    target = getattr(spec, "__call__", spec) if not inspect.isfunction(spec) else spec  # noqa: B004
    if inspect.iscoroutinefunction(spec) or inspect.iscoroutinefunction(target):
        return _async_hygiene(spec)
    return _sync_hygiene(spec)


def configured_handlers(extra: Mapping[str, Any] | None = None, *, hygiene: bool = True) -> dict[str, Any]:
    """``HEADRACE["HANDLERS"]`` (imported), the task handlers of every headrace Tasks backend,
    then ``extra``; each wrapped in connection hygiene unless ``hygiene`` is off."""
    from headrace.django.tasks import task_handlers

    handlers: dict[str, Any] = {}
    for topic, path in get_settings().HANDLERS.items():
        try:
            handlers[topic] = import_dotted(path)
        except Exception as exc:
            raise ConfigError(f"HEADRACE['HANDLERS'][{topic!r}] = {path!r} cannot be imported: {exc}") from exc
    handlers.update(task_handlers())
    handlers.update(extra or {})
    if not hygiene:
        return handlers
    return {topic: with_connection_hygiene(spec) for topic, spec in handlers.items()}
