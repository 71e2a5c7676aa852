"""Type stubs for the Rust extension module ``headrace._core``."""

import builtins
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from datetime import datetime
from os import PathLike
from typing import Any, Literal, ParamSpec, TypeVar, final

from typing_extensions import Self, deprecated, disjoint_base

# The pydantic models a backend deals in (not part of this module: the core builds and reads them).
from headrace.orb.models import Metadata, Policy
from headrace.state import AppInfo, Invocation, InvocationStatus, WorkflowIdentity

__all__ = [
    "DEFAULT_CHUNK_BYTES",
    "DEFAULT_MAX_RUNS_PER_POLICY",
    "Backend",
    "ClaimIterator",
    "DatabaseParams",
    "DryRunSink",
    "EnqueueBatch",
    "ExternalOutboxSql",
    "HandlerOutcome",
    "IngestCallback",
    "IngestSink",
    "InvocationHistory",
    "JsonSchema",
    "ManualClock",
    "NullSink",
    "OptimisticClaimOutboxStore",
    "OutboxItem",
    "OutboxReaper",
    "OutboxSink",
    "OutboxStore",
    "PolicyManager",
    "ProtoJson",
    "PynencStore",
    "RetryPolicy",
    "Run",
    "SkipLockedClaimOutboxStore",
    "StateBackend",
    "StopFlag",
    "TemplateRenderer",
    "WorkerCore",
    "WorkerReport",
    "__version__",
    "_drain_at_exit",
    "_panic_in_async_call",
    "check_json_schema",
    "describe_exception",
    "error_table",
    "install_log_bridge",
    "is_retryable",
    "is_sensitive_key",
    "jsonlogic_apply",
    "jsonlogic_check",
    "jsonlogic_matches",
    "list_runs",
    "next_cron_time",
    "pynenc_status_model",
    "redact_text",
    "redact_url",
    "redact_value",
    "resolve_env_references",
    "schema_plan",
    "sqlite_library",
    "status_transitions",
    "webhook_sign",
    "webhook_sign_hex",
    "webhook_verify",
    "webhook_verify_hex",
]

#: An outbox item's status.
_OutboxStatus = Literal["pending", "processing", "completed", "failed"]
#: A policy run's status.
_RunStatus = Literal["running", "completed", "failed"]

_P = ParamSpec("_P")
_R = TypeVar("_R")

def _async_twin(sync: Callable[_P, _R]) -> Callable[_P, Awaitable[_R]]:
    """The type of the ``a``-prefixed twin of a blocking method: the same parameters, awaited."""

__version__: str

def redact_url(url: str) -> str: ...
def _drain_at_exit() -> int:
    """Run at interpreter exit: waits up to 5 s for async calls still running; returns how many
    were still running after that."""

def _panic_in_async_call() -> Awaitable[None]:
    """Test hook: an awaitable whose core future panics (raises StoreError)."""

def error_table() -> list[tuple[str, str, bool]]:
    """The core's error table: ``(code, class name in headrace.errors, retryable)`` per error."""

def describe_exception(exc: BaseException) -> str:
    """``Type: message`` of ``exc`` (the type alone when the message is empty)."""

def is_retryable(exc: BaseException, context: Literal["handler", "ingest"] = "handler") -> bool:
    """The one retry classification rule for a failure of user code in ``context``."""

def install_log_bridge(level: int = 20) -> bool:
    """Forwards the core's log events at ``level`` and above to Python's ``logging``."""

# --- clock ------------------------------------------------------------------------------------

@final
class ManualClock:
    """A clock that moves only when told to; pass it as ``clock=`` to a store in tests."""

    def __new__(cls, start: datetime | None = None) -> Self: ...
    def now(self) -> datetime: ...
    def advance(self, seconds: float) -> None: ...
    def set(self, to: datetime) -> None: ...

# --- outbox -----------------------------------------------------------------------------------

@final
class RetryPolicy:
    """Exponential, capped, jittered backoff and the attempt limit."""

    max_attempts: int
    base_seconds: float
    factor: float
    max_seconds: float
    jitter: float
    def __new__(
        cls,
        max_attempts: int = 5,
        base_seconds: float = 2.0,
        factor: float = 2.0,
        max_seconds: float = 3600.0,
        jitter: float = 0.1,
    ) -> Self: ...
    def delay_seconds(self, attempt: int) -> float:
        """Seconds to wait after attempt number ``attempt`` (1-based), jitter included."""

@final
class OutboxItem:
    """One outbox row; ``payload`` is decoded from JSON on first access."""

    @property
    def id(self) -> int: ...
    @property
    def topic(self) -> str: ...
    @property
    def payload(self) -> Any: ...
    @property
    def payload_json(self) -> str: ...
    @property
    def status(self) -> _OutboxStatus: ...
    @property
    def priority(self) -> int: ...
    @property
    def attempts(self) -> int: ...
    @property
    def max_attempts(self) -> int: ...
    @property
    def run_at(self) -> datetime: ...
    @property
    def lease_owner(self) -> str | None: ...
    @property
    def lease_expires_at(self) -> datetime | None: ...
    @property
    def last_error(self) -> str | None: ...
    @property
    def dedupe_key(self) -> str | None: ...
    @property
    def trace_id(self) -> str | None: ...
    @property
    def created_at(self) -> datetime: ...
    @property
    def updated_at(self) -> datetime: ...

@disjoint_base
class OutboxStore:
    """Base of the outbox stores; ``connect`` chooses the implementation from the URL."""

    @staticmethod
    def connect(
        url: str | DatabaseParams | None = None,
        *,
        lease_seconds: float = 300.0,
        retry: RetryPolicy | None = None,
        migrate: bool = True,
        max_payload_bytes: int = ...,  # 1 MiB
        clock: ManualClock | None = None,
    ) -> OutboxStore: ...
    @property
    def url(self) -> str: ...
    @property
    def lease_seconds(self) -> float: ...
    @property
    def retry(self) -> RetryPolicy: ...
    @property
    def claim_strategy(self) -> str: ...
    def enqueue(
        self,
        topic: str,
        payload: Any,
        *,
        priority: int = 0,
        delay_seconds: float = 0.0,
        run_at: datetime | float | None = None,
        dedupe_key: str | None = None,
        max_attempts: int | None = None,
        trace_id: str | None = None,
    ) -> int: ...
    def enqueue_many(self, items: Sequence[dict[str, Any]]) -> list[int]: ...
    def claim_batch(
        self,
        worker_id: str,
        limit: int = 10,
        *,
        topics: Sequence[str] | None = None,
        exclude_topics: Sequence[str] = ...,  # ()
        due_by: datetime | float | None = None,
    ) -> list[OutboxItem]: ...
    def iter_claims(
        self,
        worker_id: str,
        limit: int = 100,
        *,
        topics: Sequence[str] | None = None,
        exclude_topics: Sequence[str] = ...,  # ()
    ) -> ClaimIterator: ...
    def mark_success(self, item_id: int, worker_id: str) -> None: ...
    def mark_success_many(self, item_ids: Sequence[int], worker_id: str) -> None: ...
    def mark_retry(
        self, item_id: int, worker_id: str, next_attempt: datetime | float | None = None, error: str = ...
    ) -> Literal["pending", "failed"]: ...
    def mark_failed(self, item_id: int, worker_id: str, error: str = ...) -> None: ...
    def extend_lease(self, item_id: int, worker_id: str, seconds: float | None = None) -> datetime: ...
    def release(self, item_ids: Sequence[int], worker_id: str) -> int: ...
    def get(self, item_id: int) -> OutboxItem: ...
    def get_by_dedupe_key(self, dedupe_key: str) -> OutboxItem | None:
        """The newest item holding ``dedupe_key`` in any status (``None`` if none holds it)."""
    def list(
        self, *, status: _OutboxStatus | None = None, topic: str | None = None, limit: int = 50
    ) -> builtins.list[OutboxItem]: ...
    def stats(self) -> dict[str, int]: ...
    def close(self) -> None:
        """Releases every connection and stops the LISTEN task; later calls raise ``StoreError``."""
    def __enter__(self) -> Self: ...
    def __exit__(self, *exc: object) -> bool: ...
    def __aenter__(self) -> Awaitable[Self]: ...
    def __aexit__(self, *exc: object) -> Awaitable[bool]: ...
    def requeue(self, item_id: int) -> None: ...
    def requeue_failed(self, topic: str | None = None) -> int: ...
    def purge(self, older_than_seconds: float, statuses: Sequence[_OutboxStatus] = ...) -> int: ...
    # The async twins (generated from the same definitions in the core): each takes what its
    # sync twin takes and returns an awaitable of its result.
    aenqueue = _async_twin(enqueue)
    aenqueue_many = _async_twin(enqueue_many)
    aclaim_batch = _async_twin(claim_batch)
    amark_success = _async_twin(mark_success)
    amark_success_many = _async_twin(mark_success_many)
    amark_retry = _async_twin(mark_retry)
    amark_failed = _async_twin(mark_failed)
    aextend_lease = _async_twin(extend_lease)
    arelease = _async_twin(release)
    aget = _async_twin(get)
    aget_by_dedupe_key = _async_twin(get_by_dedupe_key)
    alist = _async_twin(list)
    astats = _async_twin(stats)
    aclose = _async_twin(close)
    arequeue = _async_twin(requeue)
    arequeue_failed = _async_twin(requeue_failed)
    apurge = _async_twin(purge)

@final
class ClaimIterator:
    """Claimed batches until none is due, the next one claimed while the caller works."""

    def __iter__(self) -> ClaimIterator: ...
    def __next__(self) -> list[OutboxItem]: ...
    def close(self) -> int:
        """Gives an unused prefetched batch back to ``pending``; returns how many items it held."""
    def __enter__(self) -> ClaimIterator: ...
    def __exit__(self, *exc: object) -> bool: ...

@final
class SkipLockedClaimOutboxStore(OutboxStore):
    """PostgreSQL outbox: batch claims with ``FOR UPDATE SKIP LOCKED``."""

    def __new__(
        cls,
        url: str | None = None,
        *,
        lease_seconds: float = 300.0,
        retry: RetryPolicy | None = None,
        migrate: bool = True,
        max_payload_bytes: int = ...,  # 1 MiB
        clock: ManualClock | None = None,
    ) -> Self: ...

@final
class OptimisticClaimOutboxStore(OutboxStore):
    """SQLite outbox: claims inside ``BEGIN IMMEDIATE`` transactions."""

    def __new__(
        cls,
        url: str | None = None,
        *,
        lease_seconds: float = 300.0,
        retry: RetryPolicy | None = None,
        migrate: bool = True,
        max_payload_bytes: int = ...,  # 1 MiB
        clock: ManualClock | None = None,
    ) -> Self: ...

@final
class OutboxReaper:
    """Returns items with expired leases to ``pending`` (or ``failed`` once out of attempts)."""

    def __new__(cls, store: OutboxStore, stale_threshold_seconds: float = 600.0) -> Self: ...
    def reap_stale_items(self) -> int: ...
    def areap_stale_items(self) -> Awaitable[int]: ...

# --- policy runner ----------------------------------------------------------------------------

DEFAULT_CHUNK_BYTES: int
DEFAULT_MAX_RUNS_PER_POLICY: int

@disjoint_base
class Backend:
    """Base class of integrations: implement ``describe()`` (classmethod) and ``run()``."""

    ingest_callback: IngestCallback | Any | None
    ingest_sink: IngestSink | Any | None
    def __init__(self, *args: Any, ingest_callback: Any = None, ingest_sink: Any = None, **kwargs: Any) -> None: ...
    @classmethod
    def describe(cls) -> Metadata: ...
    @deprecated(
        "Backend.setup() is deprecated: implement the describe() classmethod instead "
        "(the setup() fallback will be removed in headrace 2.0)"
    )
    def setup(self) -> Metadata: ...
    def run(self, policy_name: str, policy: Policy, **kwargs: Any) -> Iterable[Any]: ...

@final
class Run:
    """One recorded run of a policy."""

    @property
    def id(self) -> str: ...
    @property
    def policy_id(self) -> str: ...
    @property
    def status(self) -> _RunStatus: ...
    @property
    def reason(self) -> str | None: ...
    @property
    def entity_count(self) -> int: ...
    @property
    def metadata(self) -> dict[str, Any]: ...
    @property
    def source(self) -> str: ...
    @property
    def created_at(self) -> datetime: ...
    @property
    def updated_at(self) -> datetime: ...

@final
class IngestCallback:
    """``ingest_callback(entities=...)`` or ``ingest_callback(error=...)``: exactly one."""

    @property
    def policy_name(self) -> str: ...
    def __call__(self, *args: Any, entities: Iterable[Any] | None = None, error: Any = None, **kwargs: Any) -> None: ...

@final
class IngestSink:
    """The ``ingest_sink`` protocol: records runs like the callback but never raises."""

    @property
    def policy_name(self) -> str: ...
    def ingest(self, entities: Iterable[Any], **kwargs: Any) -> Run | None: ...
    def record_failure(self, error: BaseException | str, **kwargs: Any) -> Run | None: ...

@final
class OutboxSink:
    """Each chunk becomes one outbox item ``{"metadata": {...}, "entities": [...]}``."""

    def __new__(cls, store: OutboxStore, topic: str = "headrace.entities") -> Self: ...
    @property
    def topic(self) -> str: ...
    @property
    def store(self) -> OutboxStore: ...
    def discard_abandoned(self, older_than_seconds: float) -> int:
        """Deletes chunks held for more than ``older_than_seconds`` by runs that never ended."""

@final
class DryRunSink:
    """Writes each chunk to its own JSON file."""

    def __new__(cls, directory: str | PathLike[str]) -> Self: ...
    @property
    def directory(self) -> str: ...

@final
class NullSink:
    """Discards chunks, counting them."""

    def __new__(cls) -> Self: ...
    @property
    def chunks(self) -> int: ...
    @property
    def entities(self) -> int: ...
    @property
    def bytes(self) -> int: ...

@disjoint_base
class PolicyManager:
    """Loads, schedules and runs policies; records every run."""

    def metrics_snapshot(self) -> list[tuple[str, int, int, int, float]]:
        """``(policy, completed, failed, ticks_skipped, run_seconds)`` counted in this process."""
    def __new__(
        cls,
        state: Any = None,
        sink: Any = None,
        *,
        chunk_bytes: int = ...,
        max_runs_per_policy: int = ...,  # 100
    ) -> Self: ...
    def start_policies(self, policies: str | bytes | Mapping[str, Any], *, schedule: bool = True) -> list[str]: ...
    def delete_policy(self, name: str) -> None: ...
    def run_now(self, name: str) -> Run: ...
    def runs(self, name: str) -> list[Run]: ...
    def stop(self, timeout: float = 30.0) -> bool: ...
    def wait_idle(self, timeout: float = 30.0) -> bool: ...
    def policy(self, name: str) -> Policy: ...
    def is_running(self, name: str) -> bool: ...
    @property
    def policies(self) -> list[str]: ...
    @property
    def inflight(self) -> int: ...
    @property
    def chunk_bytes(self) -> int: ...
    @property
    def sink(self) -> Any: ...
    @property
    def state(self) -> Any: ...
    def _tick(self, name: str) -> str: ...
    def __enter__(self) -> PolicyManager: ...
    def __exit__(self, *exc: object) -> bool: ...

def list_runs(url: str | StateBackend, policy: str | None = None, *, limit: int = 20) -> list[Run]: ...

# ----- state backend (headrace.state) ------------------------------------------------------------

def status_transitions() -> list[tuple[str, list[str]]]: ...

@final
class InvocationHistory:
    def __new__(cls, invocation_id: Any, status: Any = None, execution_context: Any = None) -> Self: ...
    @property
    def invocation_id(self) -> str: ...
    @property
    def timestamp(self) -> datetime: ...
    @property
    def status(self) -> Any: ...
    @property
    def execution_context(self) -> Any: ...
    def to_json(self) -> str: ...
    @classmethod
    def from_json(cls, json_str: str) -> InvocationHistory: ...

@disjoint_base
class StateBackend:
    def __new__(
        cls,
        url: str | DatabaseParams,
        *,
        app_id: str | None = None,
        max_batch: int = 100_000,
        clock: ManualClock | None = None,
    ) -> Self: ...
    @property
    def url(self) -> str: ...
    @property
    def closed(self) -> bool: ...
    @property
    def pending_operations(self) -> int: ...
    def upsert_invocation(self, invocation: Invocation) -> None: ...
    def get_invocation(self, invocation_id: str) -> Invocation: ...
    def add_history(
        self, invocation: Invocation | str, status: InvocationStatus | str | None = None, execution_context: Any = None
    ) -> None: ...
    def get_history(self, invocation: Invocation | str) -> list[InvocationHistory]: ...
    def set_result(self, invocation: Invocation | str, value: Any) -> None: ...
    def get_result(self, invocation: Invocation | str) -> Any: ...
    def _set_exception_record(
        self,
        invocation: Any,
        type_module: str,
        type_qualname: str,
        args_json: str | None,
        message: str,
        traceback: str,
    ) -> None: ...
    def _get_exception_record(self, invocation: Any) -> tuple[str, str, str | None, str, str] | None: ...
    def set_workflow_data(self, workflow: WorkflowIdentity | str, key: str, value: Any) -> None: ...
    def get_workflow_data(self, workflow: WorkflowIdentity | str, key: str, default: Any = None) -> Any: ...
    def set_workflow_deterministic_value(self, workflow: WorkflowIdentity | str, key: str, value: Any) -> None: ...
    def get_workflow_deterministic_value(self, workflow: WorkflowIdentity | str, key: str) -> Any: ...
    def store_app_info(self, app_info: AppInfo) -> None: ...
    def get_app_info(self) -> AppInfo: ...
    def get_all_app_infos(self) -> dict[str, AppInfo]: ...
    def store_workflow_run(self, workflow: WorkflowIdentity) -> None: ...
    def get_all_workflows(self) -> list[str]: ...
    def get_all_workflows_runs(self) -> list[WorkflowIdentity]: ...
    def get_workflow_runs(self, workflow_type: str) -> list[WorkflowIdentity]: ...
    def store_workflow_sub_invocation(self, parent_workflow_id: Any, sub_invocation_id: Any) -> None: ...
    def get_workflow_sub_invocations(self, workflow_id: Any) -> list[str]: ...
    def get_invocations_by_task(self, task_id: str, limit: int = 100) -> list[Invocation]: ...
    def delete_invocations(self, invocations: Sequence[Any]) -> int: ...
    def wait_for_all_async_operations(self) -> None: ...
    def wait_for_invocation_async_operations(self, invocation_id: Any) -> None: ...
    def close(self) -> None: ...

# --- worker -----------------------------------------------------------------------------------

@final
class StopFlag:
    """True once the worker is stopping; dispatchers start no further items then."""

    def __bool__(self) -> bool: ...
    def is_set(self) -> bool: ...

@final
class HandlerOutcome:
    """What became of one item handed to a handler; the dispatcher returns one per item."""

    @staticmethod
    def completed() -> HandlerOutcome: ...
    @staticmethod
    def not_started() -> HandlerOutcome: ...
    @staticmethod
    def failed(error: str, retryable: bool, retry_after: float | None = None) -> HandlerOutcome: ...
    @property
    def kind(self) -> Literal["completed", "not_started", "failed"]: ...
    @property
    def error(self) -> str | None: ...
    @property
    def retryable(self) -> bool | None: ...
    @property
    def retry_after(self) -> float | None: ...

@final
class WorkerReport:
    """What a worker run did."""

    processed: int
    completed: int
    retried: int
    failed: int
    released: int
    reaped: int
    abandoned: int
    def as_dict(self) -> dict[str, int]: ...

@final
class WorkerCore:
    """The Rust claim loop; use ``headrace.worker.OutboxWorker``."""

    def __new__(
        cls,
        store: OutboxStore,
        dispatch: Callable[[list[OutboxItem], StopFlag], Sequence[HandlerOutcome]],
        *,
        settled: Callable[[list[tuple[OutboxItem, str, str | None]]], None] | None = None,
        worker_id: str,
        batch_size: int = 100,
        concurrency: int = 1,
        poll_interval: float = 1.0,
        retry: RetryPolicy | None = None,
        reaper_interval: float | None = ...,  # 60.0
        topics: Sequence[str] | None = None,
        exclude_topics: Sequence[str] = ...,  # ()
        retry_by_topic: Mapping[str, RetryPolicy] = ...,
        handler_timeout: float | None = None,
        stop_grace: float = 10.0,
    ) -> Self: ...
    def set_settled(
        self, settled: Callable[[list[tuple[OutboxItem, str, str | None]]], None] | None = None
    ) -> None: ...
    @property
    def worker_id(self) -> str: ...
    @property
    def stopping(self) -> bool: ...
    def run(self) -> WorkerReport: ...
    def run_until_empty(self, timeout: float | None = None) -> WorkerReport: ...
    def arun(self) -> Awaitable[WorkerReport]: ...
    def arun_until_empty(self, timeout: float | None = None) -> Awaitable[WorkerReport]: ...
    def stop(self) -> None: ...
    def metrics(self) -> str: ...
    def metrics_snapshot(
        self,
    ) -> tuple[dict[str, dict[str, int]], tuple[int, float], dict[str, tuple[int, float]]]: ...

def next_cron_time(expression: str, after: datetime, *, local: bool = False, timezone: str | None = None) -> datetime:
    """The first time the 5-field cron ``expression`` fires strictly after ``after``, in UTC;
    with ``local=True`` in the process's local time zone (``TZ``); with ``timezone=`` in the
    zone a policy's ``config.timezone`` names ("UTC", "local" or an IANA name)."""

# ----- Django integration (#11): statements for a connection the core does not own ------------

@final
class DatabaseParams:
    """Connection parameters given field by field; accepted wherever a database URL is."""

    def __new__(
        cls,
        engine: str,
        *,
        name: str | None = None,
        host: str | None = None,
        port: int | None = None,
        user: str | None = None,
        password: str | None = None,
        options: Mapping[str, str] | None = None,
    ) -> Self: ...
    @property
    def engine(self) -> str: ...
    @property
    def name(self) -> str | None: ...

_Statement = tuple[str, tuple[Any, ...]]

@final
class EnqueueBatch:
    """One statement for a batch (``ExternalOutboxSql.enqueue_batch``)."""

    @property
    def insert(self) -> _Statement: ...
    def __len__(self) -> int: ...
    def resolve(self, rows: list[tuple[int | None, str | None]]) -> list[int | None]: ...
    def fallback(self, index: int) -> tuple[_Statement, _Statement | None]: ...

@final
class ExternalOutboxSql:
    """The outbox's statements for ``"sqlite"`` or ``"postgresql"``, run on the caller's connection."""

    def __new__(
        cls,
        dialect: str,
        *,
        lease_seconds: float = 300.0,
        retry: RetryPolicy | None = None,
        max_payload_bytes: int = ...,
        clock: ManualClock | None = None,
    ) -> Self: ...
    @property
    def dialect(self) -> str: ...
    @property
    def lease_seconds(self) -> float: ...
    @property
    def max_attempts(self) -> int: ...
    def enqueue(
        self,
        topic: str,
        payload: Any,
        *,
        priority: int = 0,
        delay_seconds: float = 0.0,
        run_at: datetime | float | None = None,
        dedupe_key: str | None = None,
        max_attempts: int | None = None,
        trace_id: str | None = None,
    ) -> tuple[_Statement, _Statement | None]: ...
    def enqueue_batch(self, items: list[Mapping[str, Any]]) -> EnqueueBatch: ...
    def claim(
        self,
        worker_id: str,
        limit: int = 10,
        *,
        topics: list[str] | None = None,
        exclude_topics: list[str] = ...,
        due_by: datetime | None = None,
    ) -> _Statement: ...
    def ack(self, item_ids: list[int], worker_id: str) -> _Statement: ...
    def settle_failure(
        self,
        item: OutboxItem,
        worker_id: str,
        error: str,
        *,
        retryable: bool = True,
        retry_after: float | None = None,
    ) -> tuple[str, _Statement]: ...
    def release(self, item_ids: list[int], worker_id: str) -> _Statement: ...
    def get(self, item_id: int) -> _Statement: ...
    def list_items(self, *, topic: str | None = None, status: str | None = None) -> _Statement: ...
    def requeue_items(self, item_ids: list[int]) -> _Statement: ...
    def run_items_now(self, item_ids: list[int]) -> _Statement: ...
    def fail_items(self, item_ids: list[int], error: str) -> _Statement: ...
    def purge_items(self, item_ids: list[int]) -> _Statement: ...
    def items(self, rows: list[Any]) -> list[OutboxItem]: ...

def schema_plan(dialect: str) -> dict[str, Any]: ...
def sqlite_library() -> tuple[str, bool]: ...

# -- automate (#13): JSON Schema, JsonLogic, templates, webhook HMAC, redaction -----------------

@final
class JsonSchema:
    """A JSON Schema compiled once; refused (``ConfigError``) when it is not valid JSON Schema."""

    def __new__(cls, schema: Any) -> JsonSchema: ...
    def errors(self, instance: Any) -> list[dict[str, str]]:
        """Every failing field as ``{path, schema_path, message}``; empty when valid."""

def check_json_schema(schema: Any) -> None: ...
def jsonlogic_check(rule: Any) -> None: ...
def jsonlogic_apply(rule: Any, data: Any) -> Any: ...
def jsonlogic_matches(rule: Any, data: Any) -> bool: ...
def webhook_sign(secret: str, delivery_id: str, timestamp: int, body: bytes) -> str: ...
def webhook_verify(
    secrets: Sequence[str],
    delivery_id: str | None,
    timestamp: str | None,
    signature: str | None,
    body: bytes,
    now: int,
    tolerance_seconds: int = ...,  # 300
) -> tuple[str, int]: ...
def webhook_sign_hex(secret: str, body: bytes) -> str: ...
def webhook_verify_hex(secrets: Sequence[str], signature: str | None, body: bytes) -> None: ...
def redact_value(value: Any, secrets: Sequence[str] = ...) -> Any: ...
def redact_text(text: str, secrets: Sequence[str] = ...) -> str: ...
def is_sensitive_key(key: str) -> bool: ...

@final
class TemplateRenderer:
    """Step-input templates (minijinja): sandboxed, strict, with Python filters."""

    def __new__(cls, filters: Sequence[tuple[str, Callable[..., Any]]] | None = None) -> TemplateRenderer: ...
    @property
    def filters(self) -> list[str]: ...
    def check(self, input: Any) -> None: ...
    def render(self, input: Any, context: Any, lookup: Callable[[str, str], str | None]) -> tuple[Any, list[str]]: ...

# --- orb-worker drop-in (#10) -----------------------------------------------------------------

def resolve_env_references(document_json: str) -> str:
    """The JSON document with every ``${VAR}`` resolved from the environment, as JSON;
    ``ConfigError`` naming each unset variable."""

_ProtoJsonField = tuple[int, str, str, int, str, bool, bool, int, bool]

@final
class ProtoJson:
    """Renders a chunk's serialised entities as the diode SDK's dry-run client prints them."""

    def __new__(
        cls,
        messages: Sequence[tuple[str, Sequence[_ProtoJsonField]]],
        enums: Sequence[tuple[bool, Sequence[tuple[int, str]]]],
        root: int,
    ) -> ProtoJson: ...
    def entities_json(self, body: bytes, level: int) -> str | None: ...

# -- headrace.pynenc (issue #15) --------------------------------------------------------------

_PynencInvocationRow = tuple[str, str, str, str, str | None, str | None, str | None, str | None, str | None]
_PynencRefusalRow = tuple[str, str, str | None, str, list[str], str | None, str | None, str]

def pynenc_status_model() -> list[tuple[str | None, list[str], bool, bool, bool, bool, bool, bool]]:
    """pynenc's status model as the core stores and enforces it, one row per status."""

@final
class PynencStore:
    """One pynenc app's handle on a headrace pynenc store (memory, SQLite or PostgreSQL)."""

    @staticmethod
    def open(
        url: str,
        app_id: str,
        *,
        durability: str = "durable",
        transitions: str = "record",
        max_batch: int = 5000,
    ) -> PynencStore: ...
    @property
    def app_id(self) -> str: ...
    def upsert_invocations(self, rows: Sequence[_PynencInvocationRow]) -> None: ...
    def add_histories(self, entries: Sequence[str]) -> list[_PynencRefusalRow]: ...
    def add_history_for(self, invocation_ids: Sequence[str], entry: str) -> list[_PynencRefusalRow]: ...
    def set_result(self, invocation_id: str, value: str) -> None: ...
    def set_exception(self, invocation_id: str, value: str) -> None: ...
    def set_workflow_data(self, workflow_id: str, key: str, value: str) -> None: ...
    def store_app_info(self, app_id: str, info_json: str) -> None: ...
    def store_workflow_run(
        self, workflow_id: str, workflow_type_key: str, parent_workflow_id: str | None = None
    ) -> None: ...
    def store_sub_invocation(self, parent_workflow_id: str, sub_invocation_id: str) -> None: ...
    def store_runner_contexts(self, contexts: Sequence[tuple[str, str]]) -> None: ...
    def get_invocation(self, invocation_id: str) -> _PynencInvocationRow | None: ...
    def get_history(self, invocation_id: str) -> list[str]: ...
    def get_result(self, invocation_id: str) -> str | None: ...
    def get_exception(self, invocation_id: str) -> str | None: ...
    def get_workflow_data(self, workflow_id: str, key: str) -> str | None: ...
    def get_app_info(self, app_id: str) -> str | None: ...
    def all_app_infos(self) -> list[tuple[str, str]]: ...
    def workflow_types(self) -> list[str]: ...
    def workflow_runs(self, workflow_type_key: str | None = None) -> list[tuple[str, str, str | None]]: ...
    def sub_invocations(self, workflow_id: str) -> list[str]: ...
    def child_invocations(self, parent_invocation_id: str) -> list[str]: ...
    def invocations_by_parent_event(self, parent_event_id: str) -> list[str]: ...
    def invocations_by_workflow(
        self, workflow_id: str | None = None, workflow_type_key: str | None = None
    ) -> list[str]: ...
    def history_in_range(self, start_us: int, end_us: int, limit: int, offset: int) -> list[str]: ...
    def invocations_in_range(self, start_us: int, end_us: int, limit: int, offset: int) -> list[str]: ...
    def runner_contexts(self, runner_ids: Sequence[str]) -> list[str]: ...
    def matching_runner_contexts(self, partial_id: str) -> list[str]: ...
    def purge(self) -> None: ...
    def flush(self) -> None: ...
    def close(self) -> None: ...
