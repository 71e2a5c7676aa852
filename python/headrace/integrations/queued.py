""":class:`QueuedClient`: a client whose work runs through the outbox, with retries."""

from __future__ import annotations

from typing import Any, ClassVar

from headrace.errors import ConfigError
from headrace.integrations.descriptors import Client
from headrace.integrations.stores import default_store
from headrace.outbox import OutboxStore, RetryPolicy
from headrace.worker import QueuedHandler


class QueuedClient(Client, QueuedHandler):
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
