"""Integration implementation descriptors (angee's ``integrate.impl`` contract).

* :class:`IntegrationImpl` binds behaviour to an owning integration record; subclasses are
  found by string key in a :class:`Registry` filled from dotted paths (a Django-style setting)
  and from the entry-point group ``headrace.integrations``.
* :class:`Client` calls out; :class:`QueuedClient` does so asynchronously through the outbox:
  ``client.enqueue(payload)`` puts an item on the client's topic and ``OutboxWorker`` dispatches
  it to ``run(payload)`` with the client's own ``max_retries`` / ``retry_backoff_base_seconds``.
* :class:`BridgeImpl` pulls data in on a schedule; :func:`run_due_bridges` runs each bridge whose
  ``next_sync_at`` has passed exactly once, even across processes, and advances it.
"""

from __future__ import annotations

import importlib
import logging
import os
import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from importlib.metadata import entry_points
from typing import Any, ClassVar

from headrace.errors import ConfigError, LeaseLost, NotFoundError, is_retryable
from headrace.outbox import OutboxStore, RetryPolicy

__all__ = [
    "BridgeImpl",
    "BridgeRun",
    "BridgeState",
    "Client",
    "IntegrationImpl",
    "NullIntegrationImpl",
    "QueuedClient",
    "Registry",
    "bridge_state",
    "default_store",
    "oauth_clients",
    "registry",
    "run_due_bridges",
]

log = logging.getLogger("headrace.integrations")

ENTRY_POINT_GROUP = "headrace.integrations"
BRIDGE_TOPIC = "headrace.bridge"
#: Bridges recur forever: their outbox item is never dead-lettered for running too often.
_BRIDGE_MAX_ATTEMPTS = 2**31 - 1


# --- OAuth clients ------------------------------------------------------------------------------


class OAuthClientRegistry:
    """Named OAuth clients that integrations connect through; only enabled ones are returned."""

    def __init__(self) -> None:
        self._clients: dict[str, tuple[Any, bool]] = {}

    def register(self, name: str, client: Any, *, enabled: bool = True) -> None:
        self._clients[name] = (client, enabled)

    def unregister(self, name: str) -> None:
        self._clients.pop(name, None)

    def enabled(self, name: str) -> Any | None:
        client, enabled = self._clients.get(name, (None, False))
        return client if enabled else None


oauth_clients = OAuthClientRegistry()


# --- descriptors --------------------------------------------------------------------------------


class IntegrationImpl:
    """Base descriptor for one record-selected integration implementation."""

    #: Registry key; defaults to the class's dotted path.
    key: ClassVar[str] = ""
    label: ClassVar[str] = ""
    category: ClassVar[str] = "integration"
    #: Name (or ``{vendor}`` template) of the OAuth client to connect through.
    oauth_client: ClassVar[str | None] = None

    def __init__(self, integration: Any = None) -> None:
        self.integration = integration

    @classmethod
    def registry_key(cls) -> str:
        return cls.key or f"{cls.__module__}.{cls.__qualname__}"

    @property
    def vendor_slug(self) -> str | None:
        """The bound integration's vendor slug (``vendor_slug``, ``vendor.slug`` or ``vendor``)."""
        record = self.integration
        if record is None:
            return None
        slug = getattr(record, "vendor_slug", None)
        if slug is None:
            vendor = getattr(record, "vendor", None)
            slug = getattr(vendor, "slug", vendor)
        return str(slug) if slug else None

    def connect_oauth_client(self, owner_label: str) -> Any:
        """The enabled OAuth client this integration connects through.

        Uses the ``oauth_client`` hint, else the vendor slug; ``{vendor}`` in the hint is filled
        with the vendor slug. Raises ``NotFoundError`` when no such client is enabled.
        """
        vendor = self.vendor_slug
        hint = self.oauth_client or vendor
        if not hint:
            raise NotFoundError(
                f"{owner_label}: {type(self).__name__} declares no oauth_client and its integration "
                "has no vendor slug to fall back on"
            )
        if "{vendor}" in hint and not vendor:
            raise NotFoundError(f"{owner_label}: oauth_client {hint!r} needs a vendor slug, and there is none")
        name = hint.format(vendor=vendor)
        client = oauth_clients.enabled(name)
        if client is None:
            raise NotFoundError(f"{owner_label}: no enabled OAuth client named {name!r}")
        return client

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.integration!r})"


class NullIntegrationImpl(IntegrationImpl):
    """Neutral implementation for a draft record with no chosen implementation."""

    key = ""
    label = "No implementation"


class Client(IntegrationImpl):
    """Base descriptor for an outbound client: it calls out to an external service."""

    category = "client"


class QueuedClient(Client):
    """A client whose work runs asynchronously through the outbox, with retries.

    Subclasses implement :meth:`run`. ``max_retries`` retries follow the first attempt, waiting
    ``retry_backoff_base_seconds * 2**(retry-1)`` (±10 % jitter) between attempts.
    """

    category = "queued_client"
    max_retries: ClassVar[int] = 3
    retry_backoff_base_seconds: ClassVar[float] = 2.0
    retry_backoff_max_seconds: ClassVar[float] = 3600.0
    #: Outbox topic; defaults to ``client.<registry key>``.
    topic: ClassVar[str | None] = None
    #: Store used by :meth:`enqueue` when none is passed; defaults to :func:`default_store`.
    store: ClassVar[OutboxStore | None] = None

    def run(self, payload: Any) -> Any:
        """Performs one unit of queued work; implemented by the concrete client."""
        raise NotImplementedError(f"{type(self).__name__} must implement run(payload)")

    @classmethod
    def topic_name(cls) -> str:
        return cls.topic or f"client.{cls.registry_key()}"

    @classmethod
    def retry_policy(cls) -> RetryPolicy:
        if cls.max_retries < 0:
            raise ConfigError(f"{cls.__name__}.max_retries must be >= 0, got {cls.max_retries}")
        return RetryPolicy(
            max_attempts=cls.max_retries + 1,
            base_seconds=cls.retry_backoff_base_seconds,
            factor=2.0,
            max_seconds=cls.retry_backoff_max_seconds,
            jitter=0.1,
        )

    def enqueue(
        self,
        payload: Any,
        *,
        store: OutboxStore | None = None,
        priority: int = 0,
        delay_seconds: float = 0.0,
        dedupe_key: str | None = None,
        trace_id: str | None = None,
    ) -> int:
        """Puts ``payload`` on this client's topic; the worker calls :meth:`run` with it."""
        target = store or self.store or default_store()
        return target.enqueue(
            self.topic_name(),
            payload,
            priority=priority,
            delay_seconds=delay_seconds,
            dedupe_key=dedupe_key,
            max_attempts=self.max_retries + 1,
            trace_id=trace_id,
        )


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
        if self.interval_seconds and self.interval_seconds > 0:
            return moment + timedelta(seconds=self.interval_seconds)
        raise ConfigError(f"{type(self).__name__} needs interval_seconds > 0 or a cron schedule")

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


# --- registry -----------------------------------------------------------------------------------


class Registry:
    """Integration implementations by key, from dotted paths and entry points."""

    def __init__(self) -> None:
        self._impls: dict[str, type[IntegrationImpl]] = {}
        self._lock = threading.Lock()

    def register(self, impl: type[IntegrationImpl], key: str | None = None) -> type[IntegrationImpl]:
        """Adds ``impl`` under ``key`` (default: its registry key). Usable as a decorator."""
        if not (isinstance(impl, type) and issubclass(impl, IntegrationImpl)):
            raise ConfigError(f"{impl!r} is not an IntegrationImpl subclass")
        name = key or impl.registry_key()
        with self._lock:
            existing = self._impls.get(name)
            if existing is not None and existing is not impl:
                raise ConfigError(f"integration key {name!r} is taken by {existing.__qualname__}")
            self._impls[name] = impl
        return impl

    def load_paths(self, dotted_paths: Iterable[str]) -> None:
        """Registers each ``package.module.ClassName`` (a settings list)."""
        for path in dotted_paths:
            self.register(import_dotted(path))

    def load_entry_points(self, group: str = ENTRY_POINT_GROUP) -> None:
        """Registers every class advertised in the entry-point ``group`` under its entry name."""
        for entry in entry_points(group=group):
            try:
                impl = entry.load()
            except Exception as exc:
                raise ConfigError(f"entry point {entry.name!r} ({entry.value}) failed to load: {exc}") from exc
            self.register(impl, key=entry.name)

    def get(self, key: str | None) -> type[IntegrationImpl]:
        """The class for ``key``; an empty key selects :class:`NullIntegrationImpl`."""
        if not key:
            return NullIntegrationImpl
        try:
            return self._impls[key]
        except KeyError:
            known = ", ".join(sorted(self._impls)) or "none"
            raise NotFoundError(f"no integration implementation registered as {key!r} (known: {known})") from None

    def bind(self, integration: Any, key: str | None = None) -> IntegrationImpl:
        """An instance bound to ``integration``, selected by ``key`` or its ``impl_key`` attribute."""
        return self.get(key if key is not None else getattr(integration, "impl_key", None))(integration)

    def keys(self) -> list[str]:
        return sorted(self._impls)

    def __contains__(self, key: object) -> bool:
        return key in self._impls


def import_dotted(path: str) -> Any:
    module_name, _, attribute = path.rpartition(".")
    if not module_name:
        raise ConfigError(f"{path!r} is not a dotted path like 'package.module.ClassName'")
    try:
        return getattr(importlib.import_module(module_name), attribute)
    except (ImportError, AttributeError) as exc:
        raise ConfigError(f"cannot import {path!r}: {exc}") from exc


registry = Registry()


# --- stores -------------------------------------------------------------------------------------

_default_stores: dict[str, OutboxStore] = {}
_default_lock = threading.Lock()


def default_store() -> OutboxStore:
    """The process-wide store for ``$HEADRACE_DATABASE_URL`` (opened once)."""
    url = os.environ.get("HEADRACE_DATABASE_URL")
    if not url:
        raise ConfigError("no outbox store: pass store=..., set QueuedClient.store, or set HEADRACE_DATABASE_URL")
    with _default_lock:
        if url not in _default_stores:
            _default_stores[url] = OutboxStore.connect(url)
        return _default_stores[url]


# --- bridges ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class BridgeRun:
    """One bridge run by :func:`run_due_bridges`."""

    bridge_key: str
    ok: bool
    error: str | None
    next_sync_at: datetime
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
    time) decides what is due.
    """
    target = store or default_store()
    moment = now or datetime.now(timezone.utc)
    if moment.tzinfo is None:
        raise ConfigError("now must be a timezone-aware datetime")
    worker = worker_id or f"bridges-{os.getpid()}-{threading.get_ident()}"
    by_key: dict[str, BridgeImpl] = {}
    for bridge in bridges:
        by_key[_bridge_dedupe_key(bridge)] = bridge
        target.enqueue(
            BRIDGE_TOPIC,
            {"bridge": bridge.bridge_key},
            dedupe_key=_bridge_dedupe_key(bridge),
            max_attempts=_BRIDGE_MAX_ATTEMPTS,
            run_at=moment,
        )
    runs: list[BridgeRun] = []
    for item in target.claim_batch(worker, 10_000, topics=[BRIDGE_TOPIC], due_by=moment):
        bridge = by_key.get(item.dedupe_key or "")
        if bridge is None:
            target.release([item.id], worker)  # another caller's bridge: leave it to them
            continue
        next_at = bridge.next_sync_after(moment)
        if bridge.store is None:
            bridge.store = target
        try:
            result, error = bridge.sync(), None
        except Exception as exc:
            result, error = None, f"{type(exc).__qualname__}: {exc}"
            log.warning("bridge %s failed (retryable=%s): %s", bridge.bridge_key, is_retryable(exc), error)
        try:
            target.mark_retry(item.id, worker, next_at, error or "")
        except LeaseLost:
            log.warning("bridge %s ran longer than the lease; another process may run it again", bridge.bridge_key)
        runs.append(BridgeRun(bridge.bridge_key, error is None, error, next_at, result))
    return runs
