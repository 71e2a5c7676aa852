"""The policy runner: orb-worker backends on a Rust scheduler, with a durable run store.

``PolicyManager(state, sink)`` loads each policy's backend (``config.package`` is a module name,
or a name in the ``headrace.backends`` entry-point group), schedules it (5-field cron in UTC, or
once right away when it has no schedule), and records every run: scheduled, manual
(``run_now``) and callback runs all take the same path — the run is recorded RUNNING, the
backend's entities are pulled lazily and encoded once in Rust with ``metadata.run_id`` stamped,
packed into chunks of at most ``chunk_bytes`` encoded bytes, handed to the sink, and the run is
recorded COMPLETED with its entity count or FAILED with the reason.
"""

from __future__ import annotations

import importlib
import inspect
import logging
from enum import Enum
from typing import Any

from headrace import telemetry
from headrace._core import (
    DEFAULT_CHUNK_BYTES,
    DEFAULT_MAX_RUNS_PER_POLICY,
    DryRunSink,
    IngestCallback,
    IngestSink,
    NullSink,
    OutboxSink,
    Run,
    list_runs,
)
from headrace._core import PolicyManager as _CorePolicyManager
from headrace.backend import Backend
from headrace.errors import ConfigError, NotFoundError, describe
from headrace.orb.models import Config, Metadata, Policy
from headrace.plugins import registry as plugin_registry

__all__ = [
    "DEFAULT_CHUNK_BYTES",
    "DEFAULT_MAX_RUNS_PER_POLICY",
    "ENTRY_POINT_GROUP",
    "Backend",
    "Config",
    "DryRunSink",
    "IngestCallback",
    "IngestSink",
    "Metadata",
    "NullSink",
    "OutboxSink",
    "Policy",
    "PolicyManager",
    "PolicyNotFoundError",
    "Run",
    "RunSource",
    "RunStatus",
    "construct_backend",
    "find_backend_class",
    "list_runs",
    "read_metadata",
    "run_backend_once",
]

logger = logging.getLogger("headrace.runner")

#: Entry-point group naming backends: ``name = "module:Class"`` or ``name = "module"``.
ENTRY_POINT_GROUP = plugin_registry("backends").group


class PolicyNotFoundError(NotFoundError, ValueError):
    """No policy of that name: a ``NotFoundError`` and, as orb-worker raises it, a ``ValueError``."""

    code = "not_found"


class PolicyManager(_CorePolicyManager):
    """Runs policies: ``PolicyManager(state, sink, *, chunk_bytes, max_runs_per_policy)``.

    Built in Rust; this subclass reports its run metrics (executions per policy and outcome,
    backend run time, skipped ticks) through OpenTelemetry when it is installed.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        telemetry.register_policy_manager(self)

    def delete_policy(self, name: str) -> None:
        """Stops and removes ``name``; ``PolicyNotFoundError`` (a ``NotFoundError`` and a
        ``ValueError``) when no such policy runs."""
        try:
            super().delete_policy(name)
        except PolicyNotFoundError:
            raise
        except NotFoundError as exc:
            raise PolicyNotFoundError(str(exc)) from None


def _run_id_placement(descriptor: Any) -> list[tuple[int, int]]:
    """Where a protobuf message type keeps the run id (called once per type by the runner):
    ``(field number of each member of its "entity" oneof, field number of that member's
    google.protobuf.Struct "metadata")``. Empty for other message types."""
    oneof = descriptor.oneofs_by_name.get("entity")
    if oneof is None:
        return []
    pairs = []
    for field in oneof.fields:
        message = field.message_type
        metadata = message.fields_by_name.get("metadata") if message is not None else None
        if metadata is not None and metadata.message_type is not None:
            if metadata.message_type.full_name == "google.protobuf.Struct":
                pairs.append((field.number, metadata.number))
    return pairs


class RunStatus(str, Enum):
    """Lifecycle of a run; compares equal to the stored string."""

    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"

    def __str__(self) -> str:
        return self.value


class RunSource(str, Enum):
    """What started a run; compares equal to the stored string."""

    SCHEDULE = "schedule"
    CALLBACK = "callback"
    MANUAL = "manual"

    def __str__(self) -> str:
        return self.value


def backend_class_in(obj: Any, where: str) -> type[Backend]:
    """The Backend subclass ``obj`` names: the class itself, or the first one a module defines
    (one it imports otherwise); a ``ConfigError`` starting with ``where`` if there is none."""
    if isinstance(obj, type):
        if issubclass(obj, Backend) and obj is not Backend:
            return obj
        raise ConfigError(f"{where} is {obj.__qualname__}, which is not a headrace Backend subclass")
    if inspect.ismodule(obj):
        candidates = [
            value
            for value in vars(obj).values()
            if isinstance(value, type) and issubclass(value, Backend) and value is not Backend
        ]
        own = [c for c in candidates if c.__module__ == obj.__name__]
        if own or candidates:
            return (own or candidates)[0]
        raise ConfigError(f"{where} (module {obj.__name__!r}) defines no Backend subclass")
    raise ConfigError(f"{where} is {obj!r}, neither a module nor a Backend subclass")


def find_backend_class(package: str) -> type[Backend]:
    """The backend a policy's ``config.package`` names.

    ``module:ClassName`` names one class. Otherwise an entry point of that name in the
    ``headrace.backends`` group wins, else ``package`` is imported as a module and the first
    ``Backend`` subclass it defines is used (never the base class itself). Any failure is a
    ``ConfigError`` naming the module and the cause.

    Packages written for orb-worker load unchanged: headrace's ``worker`` modules are installed
    (never shadowing a real orb-worker, see ``headrace.orb.shim``) and, with
    ``BUNDLES_ROOT_PATH`` set, bundles are looked up as orb-worker does.
    """
    from headrace.orb.package_finder import evict_if_moved, install_bundle_finder
    from headrace.orb.shim import install_worker_modules

    install_worker_modules()
    if install_bundle_finder():
        evict_if_moved(package)
    if ":" in package:
        module_name, _, qualname = package.partition(":")
        where = f"backend {package!r}"
        try:
            target: Any = importlib.import_module(module_name)
            for part in qualname.split("."):
                target = getattr(target, part)
        except Exception as exc:
            raise ConfigError(f"cannot load {where}: {describe(exc)}") from exc
        return backend_class_in(target, where)
    entry_point = plugin_registry("backends").entry_point(package)
    if entry_point is not None:
        where = f"entry point {package!r} ({entry_point.value}) of group {ENTRY_POINT_GROUP!r}"
        try:
            loaded = entry_point.load()
        except Exception as exc:
            raise ConfigError(f"cannot load backend {where}: {describe(exc)}") from exc
        return backend_class_in(loaded, where)
    try:
        module = importlib.import_module(package)
    except Exception as exc:
        raise ConfigError(
            f"cannot load backend package {package!r}: importing module {package!r} failed: {describe(exc)}"
        ) from exc
    return backend_class_in(module, f"backend package {package!r}")


def _defined_by(cls: type, name: str) -> tuple[Any, type | None]:
    for klass in cls.__mro__:
        if name in vars(klass):
            return vars(klass)[name], klass
    return None, None


def _throwaway(cls: type[Backend]) -> Backend:
    try:
        return cls()
    except Exception as exc:
        raise ConfigError(
            f"backend {cls.__qualname__}: constructing a throwaway instance to read its metadata "
            f"failed: {describe(exc)}"
        ) from exc


def _implements_describe(cls: type[Backend]) -> bool:
    _, owner = _defined_by(cls, "describe")
    return owner is not None and owner is not Backend


def read_metadata(cls: type[Backend]) -> Any:
    """A backend's metadata from its ``describe()`` classmethod. For a legacy backend that only
    implements ``setup()``, ``setup()`` of a throwaway instance (logged on ``headrace.runner``);
    the policy runner itself instead sets up the very instance it schedules (see
    :func:`resolve_backend`)."""
    raw, owner = _defined_by(cls, "describe")
    try:
        if owner is not None and owner is not Backend:
            if isinstance(raw, (classmethod, staticmethod)):
                return cls.describe()
            logger.warning(
                "backend %s: describe is not a classmethod; reading its metadata from a throwaway instance",
                cls.__qualname__,
            )
            return _throwaway(cls).describe()
        _, setup_owner = _defined_by(cls, "setup")
        if setup_owner is not None and setup_owner is not Backend:
            logger.warning(
                "backend %s implements only the deprecated setup(): reading its metadata from a "
                "throwaway instance (legacy fallback, to be removed in headrace 2.0); implement "
                "the describe() classmethod",
                cls.__qualname__,
            )
            return _throwaway(cls).setup()
    except ConfigError:
        raise
    except Exception as exc:
        raise ConfigError(f"backend {cls.__qualname__}: reading its metadata failed: {describe(exc)}") from exc
    raise ConfigError(
        f"backend {cls.__qualname__} implements neither describe() nor setup(): define "
        "`@classmethod def describe(cls) -> Metadata`"
    )


class LegacySetUp:
    """A legacy backend instance already set up: the runner schedules this very instance (as
    orb-worker 1.16 does), so state ``setup()`` initialises is live when ``run()`` reads it."""

    def __init__(self, instance: Backend) -> None:
        self.instance = instance
        self.__qualname__ = type(instance).__qualname__

    def __repr__(self) -> str:
        return f"<set-up {self.__qualname__} instance>"


def resolve_backend(package: str) -> tuple[type[Backend] | LegacySetUp, Any]:
    """The backend a policy's ``package`` names and its metadata, the way the runner loads it:
    ``describe()`` read from the class (constructed later, once, with ``ingest_callback=`` and
    ``ingest_sink=``); a legacy ``setup()``-only backend constructed bare here, ``setup()`` run on
    that instance, and the instance kept to be scheduled (logged on ``headrace.runner``)."""
    cls = find_backend_class(package)
    if _implements_describe(cls):
        return cls, read_metadata(cls)
    _, setup_owner = _defined_by(cls, "setup")
    if setup_owner is None or setup_owner is Backend:
        return cls, read_metadata(cls)  # raises: neither describe() nor setup()
    logger.warning(
        "backend %s implements only the deprecated setup(): it is constructed bare and set up on "
        "the instance that is scheduled (legacy fallback, to be removed in headrace 2.0); "
        "implement the describe() classmethod",
        cls.__qualname__,
    )
    try:
        instance = cls()
    except Exception as exc:
        raise ConfigError(f"backend {cls.__qualname__}: __init__ failed: {describe(exc)}") from exc
    try:
        metadata = instance.setup()
    except Exception as exc:
        raise ConfigError(f"backend {cls.__qualname__}: setup() failed: {describe(exc)}") from exc
    return LegacySetUp(instance), metadata


def construct_backend(cls: type[Backend] | LegacySetUp, ingest_callback: Any, ingest_sink: Any) -> Backend:
    """Constructs ``cls`` once with ``ingest_callback=`` and ``ingest_sink=`` when its
    ``__init__`` accepts them; a legacy ``__init__(self)`` is constructed bare. A legacy instance
    already set up is used as it is. Either way the instance ends up with both attributes set."""
    if isinstance(cls, LegacySetUp):
        instance = cls.instance
        for name, value in (("ingest_callback", ingest_callback), ("ingest_sink", ingest_sink)):
            if getattr(instance, name, None) is None:
                setattr(instance, name, value)
        return instance
    kwargs: dict[str, Any] = {}
    try:
        parameters = inspect.signature(cls.__init__).parameters
    except (TypeError, ValueError):
        parameters = None
    if parameters is None or any(p.kind is p.VAR_KEYWORD for p in parameters.values()):
        kwargs = {"ingest_callback": ingest_callback, "ingest_sink": ingest_sink}
    else:
        if "ingest_callback" in parameters:
            kwargs["ingest_callback"] = ingest_callback
        if "ingest_sink" in parameters:
            kwargs["ingest_sink"] = ingest_sink
    try:
        instance = cls(**kwargs)
    except Exception as exc:
        raise ConfigError(f"backend {cls.__qualname__}: __init__ failed: {describe(exc)}") from exc
    for name, value in (("ingest_callback", ingest_callback), ("ingest_sink", ingest_sink)):
        if getattr(instance, name, None) is None:
            setattr(instance, name, value)
    return instance


# Called by the Rust manager (src/bindings/runner.rs).
def _resolve_backend(package: str) -> tuple[type[Backend] | LegacySetUp, Any]:
    return resolve_backend(package)


def _construct_backend(cls: type[Backend] | LegacySetUp, ingest_callback: Any, ingest_sink: Any) -> Backend:
    return construct_backend(cls, ingest_callback, ingest_sink)


def run_backend_once(
    backend: type[Backend],
    config: dict[str, Any] | None = None,
    *,
    name: str,
    sink: Any,
    scope: Any = None,
    state: Any = None,
    chunk_bytes: int = DEFAULT_CHUNK_BYTES,
) -> Run:
    """Runs ``backend`` once as policy ``name`` through the policy runner and returns the run.

    The same path as a scheduled run (construction rule, run_id, exact chunking, run record);
    used by ``BridgeImpl`` so one integration serves both the runner and the bridge scanner.
    """
    package = f"{backend.__module__}:{backend.__qualname__}"
    policy = {"config": {**(config or {}), "package": package, "schedule": None}, "scope": scope}
    manager = PolicyManager(state=state, sink=sink, chunk_bytes=chunk_bytes)
    try:
        manager.start_policies({"policies": {name: policy}}, schedule=False)
        return manager.run_now(name)
    finally:
        manager.stop()
