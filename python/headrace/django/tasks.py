"""``HeadraceTaskBackend``: a Django Tasks backend (DEP 14) on the headrace outbox.

``TASKS = {"default": {"BACKEND": "headrace.django.tasks.HeadraceTaskBackend"}}``. It subclasses
``django.tasks`` on Django 6 and the ``django-tasks`` backport below it. What it adds to the
interface: tasks are enqueued inside the caller's transaction, retried with backoff, then
dead-lettered; leases and the reaper recover tasks of crashed workers; ``manage.py
headrace_worker`` runs them.

``OPTIONS``: ``MAX_ATTEMPTS`` (default 1: Django's semantics, no retry), ``RETRY`` (RetryPolicy
keyword arguments for the backoff), ``DATABASE`` (default ``HEADRACE["DATABASE"]``). Per task,
decorate the function with :func:`retry` under ``@task``.
"""

from __future__ import annotations

import os
import socket
import traceback
from collections.abc import Callable, Iterable
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any, TypeVar

from django.core import checks
from django.core.exceptions import SuspiciousOperation
from django.utils.module_loading import import_string

from headrace.errors import HeadraceError, NotFoundError, is_retryable

if TYPE_CHECKING:  # type-checked against the backport, which has the same API and ships types
    from django_tasks import task_backends
    from django_tasks.backends.base import BaseTaskBackend
    from django_tasks.base import Task, TaskContext, TaskError, TaskResult, TaskResultStatus
    from django_tasks.exceptions import InvalidTaskError as InvalidTask
    from django_tasks.exceptions import TaskResultDoesNotExist
    from django_tasks.signals import task_enqueued, task_finished, task_started
else:
    try:  # Django >= 6.0
        from django.tasks import task_backends
        from django.tasks.backends.base import BaseTaskBackend
        from django.tasks.base import Task, TaskContext, TaskError, TaskResult, TaskResultStatus
        from django.tasks.exceptions import InvalidTask, TaskResultDoesNotExist
        from django.tasks.signals import task_enqueued, task_finished, task_started
    except ImportError:  # the django-tasks backport
        from django_tasks import task_backends
        from django_tasks.backends.base import BaseTaskBackend
        from django_tasks.base import Task, TaskContext, TaskError, TaskResult, TaskResultStatus
        from django_tasks.exceptions import InvalidTaskError as InvalidTask
        from django_tasks.exceptions import TaskResultDoesNotExist
        from django_tasks.signals import task_enqueued, task_finished, task_started

__all__ = ["HeadraceTaskBackend", "TaskAttemptFailed", "retry", "task_handlers", "task_topic"]

F = TypeVar("F", bound=Callable[..., Any])

#: Outbox status → Django task status.
STATUS = {
    "pending": TaskResultStatus.READY,
    "processing": TaskResultStatus.RUNNING,
    "completed": TaskResultStatus.SUCCESSFUL,
    "failed": TaskResultStatus.FAILED,
}
_RETRY_ATTR = "__headrace_retry__"


def retry(*, max_attempts: int, **backoff: float) -> Callable[[F], F]:
    """Per-task retries: ``@task()`` over ``@retry(max_attempts=5, base_seconds=2)``. ``backoff``
    takes RetryPolicy's base_seconds, factor, max_seconds and jitter."""
    from headrace.outbox import RetryPolicy

    policy = RetryPolicy(max_attempts=max_attempts, **backoff)

    def mark(func: F) -> F:
        setattr(func, _RETRY_ATTR, policy)
        return func

    return mark


def task_topic(queue_name: str) -> str:
    """The outbox topic a queue's tasks travel on."""
    return f"tasks.{queue_name}"


def module_path(obj: Any) -> str:
    return f"{obj.__module__}.{obj.__qualname__}"


class TaskAttemptFailed(HeadraceError):
    """One attempt of a task raised; the worker retries it after ``retry_after`` seconds or
    dead-letters it (``retryable`` false)."""

    code = "task_attempt_failed"

    def __init__(self, message: str, *, retryable: bool, retry_after: float | None) -> None:
        super().__init__(message)
        self.retryable = retryable
        self.retry_after = retry_after


def _now() -> datetime:
    return datetime.now(timezone.utc)


class HeadraceTaskBackend(BaseTaskBackend):
    supports_defer = True
    supports_priority = True
    supports_async_task = True
    supports_get_result = True

    def __init__(self, alias: str, params: dict[str, Any]) -> None:
        # Django builds backends at import time (the first @task): nothing connects here.
        super().__init__(alias, params)
        self.worker_id = f"{socket.gethostname()}-{os.getpid()}"

    # -- options -------------------------------------------------------------------------------

    def _option(self, name: str, default: Any) -> Any:
        return self.options.get(name, default)

    def database(self) -> str:
        from headrace.django.db import outbox_alias

        return str(self._option("DATABASE", None) or outbox_alias())

    def retry_policy(self, task: Any) -> Any:
        from headrace.outbox import RetryPolicy

        per_task = getattr(task.func, _RETRY_ATTR, None)
        if per_task is not None:
            return per_task
        return RetryPolicy(max_attempts=int(self._option("MAX_ATTEMPTS", 1)), **self._option("RETRY", {}))

    def check(self, **kwargs: Any) -> Iterable[checks.CheckMessage]:
        from django.apps import apps

        yield from super().check(**kwargs)
        if not apps.is_installed("headrace.django"):
            yield checks.Error(
                f"TASKS[{self.alias!r}] uses HeadraceTaskBackend but headrace.django is not installed",
                hint='Add "headrace.django" to INSTALLED_APPS.',
                id="headrace.E010",
            )
        unknown = set(self.options) - {"MAX_ATTEMPTS", "RETRY", "DATABASE"}
        if unknown:
            yield checks.Error(
                f"TASKS[{self.alias!r}]['OPTIONS'] has unknown keys {sorted(unknown)}",
                hint="Known: MAX_ATTEMPTS, RETRY, DATABASE.",
                id="headrace.E011",
            )
        if not self.queues:
            yield checks.Error(
                f"TASKS[{self.alias!r}]['QUEUES'] is empty: headrace needs the queue names to route them",
                id="headrace.E012",
            )

    # -- enqueue -------------------------------------------------------------------------------

    def enqueue(self, task: Any, args: Any, kwargs: Any) -> Any:
        from headrace.django.outbox import enqueue

        self.validate_task(task)
        policy = self.retry_policy(task)
        payload = {
            "task": module_path(task.func),
            "args": list(args),
            "kwargs": dict(kwargs),
            "backend": self.alias,
            "queue": task.queue_name,
            "priority": task.priority,
            "run_after": task.run_after.isoformat() if task.run_after else None,
        }
        item_id = enqueue(
            task_topic(task.queue_name),
            payload,
            priority=task.priority,
            run_at=task.run_after,
            max_attempts=policy.max_attempts,
            using=self.database(),
        )
        result = self._result(task, str(item_id), TaskResultStatus.READY, args, kwargs, enqueued_at=_now())
        task_enqueued.send(type(self), task_result=result)
        return result

    def _result(
        self,
        task: Any,
        result_id: str,
        status: Any,
        args: Any,
        kwargs: Any,
        *,
        enqueued_at: datetime | None,
        started_at: datetime | None = None,
        finished_at: datetime | None = None,
        last_attempted_at: datetime | None = None,
        errors: list[Any] | None = None,
        worker_ids: list[str] | None = None,
    ) -> Any:
        fields: dict[str, Any] = {
            "task": task,
            "id": result_id,
            "status": status,
            "enqueued_at": enqueued_at,
            "started_at": started_at,
            "finished_at": finished_at,
            "args": list(args),
            "kwargs": dict(kwargs),
            "backend": self.alias,
            "errors": errors or [],
            "worker_ids": worker_ids or [],
        }
        if "last_attempted_at" in TaskResult.__dataclass_fields__:
            fields["last_attempted_at"] = last_attempted_at
        return TaskResult(**fields)

    # -- results -------------------------------------------------------------------------------

    def get_result(self, result_id: str) -> Any:
        from django.db import connections

        from headrace.django import db, results

        try:
            item_id = int(result_id)
        except (TypeError, ValueError):
            raise TaskResultDoesNotExist(result_id) from None
        alias = self.database()
        sql = db.external_sql(alias)
        with connections[alias].cursor() as cursor:
            cursor.execute(*sql.get(item_id))
            rows = cursor.fetchall()
        items = sql.items(rows)
        if not items or not items[0].topic.startswith("tasks."):
            raise TaskResultDoesNotExist(result_id)
        item = items[0]
        payload = item.payload
        task = _load_task(payload)
        state = results.state_for(alias)
        errors, worker_ids, starts = [], [], []
        return_value = None
        for attempt in range(1, item.attempts + 1):
            invocation = _invocation_id(item.id, attempt)
            try:
                history = state.get_history(invocation)
            except NotFoundError:
                continue
            for entry in history:
                context = entry.execution_context or {}
                if str(entry.status) == "running":
                    worker_ids.append(str(context.get("worker_id", "")))
                    starts.append(entry.timestamp)
            record = state._get_exception_record(invocation)
            if record is not None:
                module, qualname, _args, _message, tb = record
                errors.append(TaskError(exception_class_path=f"{module}.{qualname}", traceback=tb))
            elif item.status == "completed" and attempt == item.attempts:
                try:
                    return_value = state.get_result(invocation)
                except NotFoundError:
                    return_value = None
        status = STATUS[item.status]
        if status == TaskResultStatus.RUNNING and len(starts) < item.attempts:
            status = TaskResultStatus.READY  # claimed, not started yet
        result = self._result(
            task,
            result_id,
            status,
            payload.get("args", []),
            payload.get("kwargs", {}),
            enqueued_at=item.created_at,
            started_at=starts[0] if starts else None,
            last_attempted_at=starts[-1] if starts else None,
            finished_at=item.updated_at if item.status in ("completed", "failed") else None,
            errors=errors,
            worker_ids=worker_ids,
        )
        object.__setattr__(result, "_return_value", return_value)
        return result

    # -- execution (the worker's handler for this backend's topics) ------------------------------

    def run_item(self, item: Any) -> Any:
        """Runs one attempt of the task in ``item``; returns its JSON-normalised return value."""
        from headrace.django import results
        from headrace.state import Invocation, InvocationStatus

        payload = item.payload
        task = _load_task(payload)
        state = results.state_for(self.database())
        invocation = Invocation(
            module_path(task.func),
            {"item_id": item.id, "attempt": item.attempts},
            invocation_id=_invocation_id(item.id, item.attempts),
        )
        state.upsert_invocation(invocation)
        state.add_history(invocation, InvocationStatus.RUNNING, {"worker_id": self.worker_id})
        now = _now()
        running = self._result(
            task,
            str(item.id),
            TaskResultStatus.RUNNING,
            payload.get("args", []),
            payload.get("kwargs", {}),
            enqueued_at=item.created_at,
            started_at=now,
            last_attempted_at=now,
            worker_ids=[self.worker_id] * item.attempts,
        )
        task_started.send(type(self), task_result=running)
        try:
            args = payload.get("args", [])
            if task.takes_context:
                args = [TaskContext(task_result=running), *args]
            value = _normalize(task.call(*args, **payload.get("kwargs", {})))
        except KeyboardInterrupt:
            raise
        except BaseException as exc:
            retryable = is_retryable(exc) if isinstance(exc, Exception) else False
            final = not retryable or item.attempts >= item.max_attempts
            state.set_exception(invocation, exc)
            state.add_history(
                invocation,
                InvocationStatus.FAILED if final else InvocationStatus.RETRY,
                {"worker_id": self.worker_id},
            )
            state.wait_for_invocation_async_operations(invocation.invocation_id)
            error = TaskError(
                exception_class_path=module_path(type(exc)),
                traceback="".join(traceback.format_exception(type(exc), exc, exc.__traceback__)),
            )
            object.__setattr__(running, "errors", [error])
            object.__setattr__(running, "status", TaskResultStatus.FAILED if final else TaskResultStatus.READY)
            if final:
                object.__setattr__(running, "finished_at", _now())
                task_finished.send(type(self), task_result=running)
            policy = self.retry_policy(task)
            raise TaskAttemptFailed(
                f"{module_path(type(exc))}: {exc}",
                retryable=retryable,
                retry_after=None if final else policy.delay_seconds(item.attempts),
            ) from exc
        state.set_result(invocation, value)
        state.add_history(invocation, InvocationStatus.SUCCESS, {"worker_id": self.worker_id})
        state.wait_for_invocation_async_operations(invocation.invocation_id)
        object.__setattr__(running, "status", TaskResultStatus.SUCCESSFUL)
        object.__setattr__(running, "finished_at", _now())
        object.__setattr__(running, "_return_value", value)
        task_finished.send(type(self), task_result=running)
        return value


def _invocation_id(item_id: int, attempt: int) -> str:
    return f"task-{item_id}-attempt-{attempt}"


def _normalize(value: Any) -> Any:
    if TYPE_CHECKING:
        from django_tasks.utils import normalize_json
    else:
        try:
            from django.tasks.utils import normalize_json
        except ImportError:
            from django_tasks.utils import normalize_json
    return normalize_json(value)


def _load_task(payload: dict[str, Any]) -> Any:
    path = payload.get("task", "")
    try:
        func_or_task = import_string(path)
    except ImportError as exc:
        raise SuspiciousOperation(f"task {path!r} cannot be imported (moved or renamed?): {exc}") from exc
    task = func_or_task if hasattr(func_or_task, "using") and hasattr(func_or_task, "func") else None
    if task is None:
        raise SuspiciousOperation(f"{path!r} is not a task")
    run_after = payload.get("run_after")
    return task.using(
        priority=payload.get("priority", task.priority),
        queue_name=payload.get("queue", task.queue_name),
        run_after=datetime.fromisoformat(run_after) if run_after else None,
        backend=payload.get("backend", task.backend),
    )


def task_handlers() -> dict[str, Callable[[Any], Any]]:
    """Topic → handler for every configured headrace Tasks backend's queues."""
    from django.conf import settings

    handlers: dict[str, Callable[[Any], Any]] = {}
    for alias in getattr(settings, "TASKS", {}) or {}:
        backend = task_backends[alias]
        if isinstance(backend, HeadraceTaskBackend):
            for queue in sorted(backend.queues):
                handlers.setdefault(task_topic(queue), backend.run_item)
    return handlers


__all__ += ["InvalidTask", "Task"]
