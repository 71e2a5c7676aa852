"""Type stubs for the Rust extension module ``headrace._core``."""

from collections.abc import Awaitable, Sequence
from datetime import datetime
from typing import Any, final

__version__: str

# --- outbox -----------------------------------------------------------------------------------

@final
class RetryPolicy:
    """Exponential, capped, jittered backoff and the attempt limit."""

    max_attempts: int
    base_seconds: float
    factor: float
    max_seconds: float
    jitter: float
    def __init__(
        self,
        max_attempts: int = 5,
        base_seconds: float = 2.0,
        factor: float = 2.0,
        max_seconds: float = 3600.0,
        jitter: float = 0.1,
    ) -> None: ...
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
    def status(self) -> str: ...
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

class OutboxStore:
    """Base of the outbox stores; ``connect`` chooses the implementation from the URL."""

    @staticmethod
    def connect(
        url: str | None = None,
        *,
        lease_seconds: float = 300.0,
        retry: RetryPolicy | None = None,
        migrate: bool = True,
        max_payload_bytes: int = 1048576,
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
    def aenqueue(
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
    ) -> Awaitable[int]: ...
    def enqueue_many(self, items: Sequence[dict[str, Any]]) -> list[int]: ...
    def aenqueue_many(self, items: Sequence[dict[str, Any]]) -> Awaitable[list[int]]: ...
    def claim_batch(
        self, worker_id: str, limit: int = 10, *, topics: Sequence[str] | None = None
    ) -> list[OutboxItem]: ...
    def aclaim_batch(
        self, worker_id: str, limit: int = 10, *, topics: Sequence[str] | None = None
    ) -> Awaitable[list[OutboxItem]]: ...
    def mark_success(self, item_id: int, worker_id: str) -> None: ...
    def amark_success(self, item_id: int, worker_id: str) -> Awaitable[None]: ...
    def mark_success_many(self, item_ids: Sequence[int], worker_id: str) -> None: ...
    def amark_success_many(self, item_ids: Sequence[int], worker_id: str) -> Awaitable[None]: ...
    def mark_retry(
        self, item_id: int, worker_id: str, next_attempt: datetime | float | None = None, error: str = ""
    ) -> str: ...
    def amark_retry(
        self, item_id: int, worker_id: str, next_attempt: datetime | float | None = None, error: str = ""
    ) -> Awaitable[str]: ...
    def mark_failed(self, item_id: int, worker_id: str, error: str = "") -> None: ...
    def amark_failed(self, item_id: int, worker_id: str, error: str = "") -> Awaitable[None]: ...
    def extend_lease(self, item_id: int, worker_id: str, seconds: float | None = None) -> datetime: ...
    def aextend_lease(
        self, item_id: int, worker_id: str, seconds: float | None = None
    ) -> Awaitable[datetime]: ...
    def release(self, item_ids: Sequence[int], worker_id: str) -> int: ...
    def arelease(self, item_ids: Sequence[int], worker_id: str) -> Awaitable[int]: ...
    def get(self, item_id: int) -> OutboxItem: ...
    def aget(self, item_id: int) -> Awaitable[OutboxItem]: ...
    def stats(self) -> dict[str, int]: ...
    def astats(self) -> Awaitable[dict[str, int]]: ...
    def requeue(self, item_id: int) -> None: ...
    def arequeue(self, item_id: int) -> Awaitable[None]: ...
    def requeue_failed(self, topic: str | None = None) -> int: ...
    def arequeue_failed(self, topic: str | None = None) -> Awaitable[int]: ...
    def purge(self, older_than_seconds: float, statuses: Sequence[str] = ("completed",)) -> int: ...
    def apurge(
        self, older_than_seconds: float, statuses: Sequence[str] = ("completed",)
    ) -> Awaitable[int]: ...

@final
class SkipLockedClaimOutboxStore(OutboxStore):
    """PostgreSQL outbox: batch claims with ``FOR UPDATE SKIP LOCKED``."""

    def __init__(
        self,
        url: str | None = None,
        *,
        lease_seconds: float = 300.0,
        retry: RetryPolicy | None = None,
        migrate: bool = True,
        max_payload_bytes: int = 1048576,
    ) -> None: ...

@final
class OptimisticClaimOutboxStore(OutboxStore):
    """SQLite outbox: claims inside ``BEGIN IMMEDIATE`` transactions."""

    def __init__(
        self,
        url: str | None = None,
        *,
        lease_seconds: float = 300.0,
        retry: RetryPolicy | None = None,
        migrate: bool = True,
        max_payload_bytes: int = 1048576,
    ) -> None: ...

@final
class OutboxReaper:
    """Returns items with expired leases to ``pending`` (or ``failed`` once out of attempts)."""

    def __init__(self, store: OutboxStore, stale_threshold_seconds: float = 600.0) -> None: ...
    def reap_stale_items(self) -> int: ...
    def areap_stale_items(self) -> Awaitable[int]: ...
