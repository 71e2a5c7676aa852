"""State backend: pynenc's ``BaseStateBackend`` contract on memory, SQLite and PostgreSQL.

``StateBackend.connect(url)`` opens ``memory://``, ``sqlite:///path.db`` or ``postgres://…``.
Writes (``upsert_invocation``, ``add_history``, ``set_result``, ``set_exception``, the workflow
setters) return at once: a Rust task batches them into transactions. Reads through the same
``StateBackend`` object always see its own writes. ``wait_for_all_async_operations()`` and
``wait_for_invocation_async_operations(id)`` return once the writes are durable; a write that
failed in the background is raised as ``StoreError`` by the next call or wait.

Values (arguments, results, workflow data, execution contexts) are anything JSON-serialisable
(dict, list, str, int, float, bool, None); anything else raises ``ConfigError`` naming its type.
Call ``close()`` (or use the backend as a context manager) before exiting to flush the queue.
"""

from __future__ import annotations

import atexit
import importlib
import json
import traceback
import uuid
import warnings
import weakref
from dataclasses import dataclass, field
from datetime import datetime, timezone
from enum import Enum
from typing import Any

from headrace import _core
from headrace._core import DatabaseParams, InvocationHistory, ManualClock
from headrace.errors import ConfigError, HeadraceError, NotFoundError

__all__ = [
    "AppInfo",
    "Invocation",
    "InvocationHistory",
    "InvocationStatus",
    "StateBackend",
    "StoredException",
    "WorkflowIdentity",
]

_TRANSITIONS: dict[str, frozenset[str]] = {name: frozenset(allowed) for name, allowed in _core.status_transitions()}


class InvocationStatus(str, Enum):
    """Lifecycle of an invocation; compares equal to its stored name.

    Transitions (anything else raises ``InvalidStatusTransition``)::

        registered -> pending | running | killed
        pending    -> registered | running | killed
        running    -> success | failed | retry | killed
        retry      -> pending | running | failed | killed
        success, failed, killed: final
    """

    REGISTERED = "registered"
    PENDING = "pending"
    RUNNING = "running"
    SUCCESS = "success"
    FAILED = "failed"
    RETRY = "retry"
    KILLED = "killed"

    def __str__(self) -> str:
        return self.value

    def allowed_next(self) -> frozenset[InvocationStatus]:
        """The statuses this one may move to."""
        return frozenset(InvocationStatus(name) for name in _TRANSITIONS[self.value])

    def can_transition_to(self, status: InvocationStatus | str) -> bool:
        return str(InvocationStatus(status)) in _TRANSITIONS[self.value]

    @property
    def is_final(self) -> bool:
        return not _TRANSITIONS[self.value]


@dataclass(frozen=True)
class WorkflowIdentity:
    """Identity of one workflow run; ``workflow_type`` is the workflow's task id."""

    workflow_id: str
    workflow_type: str
    parent_workflow_id: str | None = None


@dataclass(frozen=True)
class AppInfo:
    """Information an app registers for discovery."""

    app_id: str
    module: str | None = None
    metadata: dict[str, Any] = field(default_factory=dict)


class Invocation:
    """One invocation of a task.

    ``arguments`` is a dict of JSON-serialisable keyword arguments (``None`` means ``{}``).
    ``invocation_id`` defaults to a fresh UUID4 and ``created_at`` to now (UTC); runs of a task
    are listed newest first by ``created_at``.
    """

    __slots__ = (
        "arguments",
        "created_at",
        "invocation_id",
        "parent_invocation_id",
        "status",
        "task_id",
        "workflow",
    )

    def __init__(
        self,
        task_id: str,
        arguments: dict[str, Any] | None = None,
        *,
        invocation_id: str | None = None,
        status: InvocationStatus | str = InvocationStatus.REGISTERED,
        workflow: WorkflowIdentity | None = None,
        parent_invocation_id: str | None = None,
        created_at: datetime | None = None,
    ) -> None:
        if not isinstance(task_id, str) or not task_id.strip():
            raise ConfigError(f"task_id must be a non-empty str, got {task_id!r}")
        if arguments is not None and not isinstance(arguments, dict):
            raise ConfigError(f"arguments must be a dict of keyword arguments or None, got {type(arguments).__name__}")
        if created_at is not None and created_at.tzinfo is None:
            raise ConfigError("created_at must be a timezone-aware datetime")
        try:
            status = InvocationStatus(status)
        except ValueError:
            raise ConfigError(f"unknown invocation status {status!r}") from None
        self.task_id = task_id
        self.arguments = {} if arguments is None else arguments
        self.invocation_id = invocation_id if invocation_id is not None else str(uuid.uuid4())
        self.status = status
        self.workflow = workflow
        self.parent_invocation_id = parent_invocation_id
        self.created_at = created_at if created_at is not None else datetime.now(timezone.utc)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Invocation):
            return NotImplemented
        return all(getattr(self, name) == getattr(other, name) for name in self.__slots__)

    __hash__ = None  # type: ignore[assignment]  # mutable

    def __repr__(self) -> str:
        return (
            f"Invocation(task_id={self.task_id!r}, invocation_id={self.invocation_id!r}, "
            f"status={self.status.value!r}, arguments={self.arguments!r})"
        )


class StoredException(HeadraceError):
    """Stands in for a stored exception whose class cannot be imported or rebuilt.

    ``type_name`` is the original ``module.qualname``, ``message`` its ``str()``,
    ``original_args`` its args (when they were JSON-serialisable) and ``traceback_text`` the
    formatted traceback.
    """

    code = "stored_exception"
    retryable = False

    def __init__(
        self,
        message: str = "",
        *,
        type_module: str = "",
        type_qualname: str = "",
        original_args: tuple[Any, ...] | None = None,
        traceback_text: str = "",
    ) -> None:
        self.type_module = type_module
        self.type_qualname = type_qualname
        self.type_name = type_qualname if type_module in ("", "builtins") else f"{type_module}.{type_qualname}"
        self.original_args = original_args
        self.traceback_text = traceback_text
        super().__init__(f"{self.type_name}: {message}" if self.type_name else message)
        self.message = message

    def __str__(self) -> str:
        return f"{self.type_name}: {self.message}" if self.type_name else self.message


def _args_json(exc: BaseException) -> str | None:
    try:
        return json.dumps(list(exc.args), allow_nan=False)
    except (TypeError, ValueError):
        return None


def exception_record(exception: BaseException) -> tuple[str, str, str | None, str, str]:
    """How headrace records an exception: the fields of the core's ``ExceptionRecord`` (its
    class's module and qualname, its args as JSON or ``None`` when they are not
    JSON-serialisable, its message and its formatted traceback)."""
    cls = type(exception)
    tb = "".join(traceback.format_exception(cls, exception, exception.__traceback__))
    return cls.__module__, cls.__qualname__, _args_json(exception), str(exception), tb


def _attach_traceback(exc: BaseException, tb: str) -> None:
    try:
        exc.__headrace_traceback__ = tb  # type: ignore[attr-defined]
    except AttributeError:  # pragma: no cover - classes with __slots__
        pass


def _resolve_class(module: str, qualname: str) -> type[BaseException] | None:
    if "<" in qualname:  # defined in a function body (<locals>): not importable
        return None
    try:
        obj: Any = importlib.import_module(module)
        for part in qualname.split("."):
            obj = getattr(obj, part)
    except Exception:
        return None
    if isinstance(obj, type) and issubclass(obj, BaseException):
        return obj
    return None


def _rebuild(module: str, qualname: str, args_json: str | None, message: str, tb: str) -> BaseException:
    args = tuple(json.loads(args_json)) if args_json is not None else None
    cls = _resolve_class(module, qualname)
    if cls is not None and args is not None:
        try:
            exc = cls(*args)
        except Exception:
            exc = None
        if exc is not None and str(exc) == message:
            _attach_traceback(exc, tb)
            return exc
    return StoredException(
        message,
        type_module=module,
        type_qualname=qualname,
        original_args=args,
        traceback_text=tb,
    )


_OPEN_BACKENDS: weakref.WeakSet[StateBackend] = weakref.WeakSet()


@atexit.register
def _flush_open_backends() -> None:
    """At interpreter exit, writes still queued in open backends are made durable (not lost)."""
    for backend in list(_OPEN_BACKENDS):
        if backend.closed:
            continue
        try:
            backend.close()
        except Exception as exc:  # pragma: no cover - reported, exit goes on
            warnings.warn(f"headrace: closing {backend!r} at exit failed: {exc}", stacklevel=1)


class StateBackend(_core.StateBackend):
    """The state backend. Open one with ``StateBackend.connect(url)``.

    Every method of pynenc's ``BaseStateBackend``: invocations, history, results, exceptions,
    workflow data and deterministic values, app infos, workflow runs and sub-invocations, and
    ``wait_for_all_async_operations`` / ``wait_for_invocation_async_operations``. For run stores:
    ``get_invocations_by_task(task_id, limit)`` (newest first) and ``delete_invocations(ids)``.
    """

    def __init__(
        self,
        url: str | DatabaseParams,
        *,
        app_id: str | None = None,
        max_batch: int = 100_000,
        clock: ManualClock | None = None,
    ) -> None:
        _OPEN_BACKENDS.add(self)

    @classmethod
    def connect(
        cls,
        url: str | DatabaseParams,
        *,
        app_id: str | None = None,
        max_batch: int = 100_000,
        clock: ManualClock | None = None,
    ) -> StateBackend:
        """Opens ``memory://``, ``sqlite:///path.db`` or ``postgres://…`` (migrating SQL stores).
        ``clock`` (a :class:`~headrace.outbox.ManualClock`, for tests) stamps history entries and
        the stored ``updated_at``; default: the system clock."""
        return cls(url, app_id=app_id, max_batch=max_batch, clock=clock)

    def set_exception(self, invocation: Invocation | str, exception: BaseException) -> None:
        """Queues the exception an invocation raised: its class (module + qualname), args,
        message and formatted traceback."""
        if not isinstance(exception, BaseException):
            raise ConfigError(f"set_exception needs an exception instance, got {type(exception).__name__}")
        self._set_exception_record(invocation, *exception_record(exception))

    def get_exception(self, invocation: Invocation | str) -> BaseException:
        """The stored exception, rebuilt as an instance of its class when that class can be
        imported and built from the stored args (giving the same message); otherwise a
        ``StoredException`` carrying the original type name, message and traceback.
        Raises ``NotFoundError`` when none was set."""
        record = self._get_exception_record(invocation)
        if record is None:
            inv_id = invocation if isinstance(invocation, str) else invocation.invocation_id
            raise NotFoundError(f"invocation {inv_id!r} has no exception")
        return _rebuild(*record)

    def __enter__(self) -> StateBackend:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
