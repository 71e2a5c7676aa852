"""Transactional outbox: enqueue, batch claim under a lease, acknowledge, retry, dead-letter.

``OutboxStore.connect(url)`` opens ``OptimisticClaimOutboxStore`` for ``sqlite:…`` URLs and
``SkipLockedClaimOutboxStore`` for ``postgres://…``. Every method has an ``a``-prefixed async twin.
"""

from __future__ import annotations

from enum import Enum

from headrace._core import (
    ClaimIterator,
    ManualClock,
    OptimisticClaimOutboxStore,
    OutboxItem,
    OutboxReaper,
    OutboxStore,
    RetryPolicy,
    SkipLockedClaimOutboxStore,
)

__all__ = [
    "ClaimIterator",
    "ManualClock",
    "OptimisticClaimOutboxStore",
    "OutboxItem",
    "OutboxReaper",
    "OutboxStatus",
    "OutboxStore",
    "RetryPolicy",
    "SkipLockedClaimOutboxStore",
]


class OutboxStatus(str, Enum):
    """Lifecycle of an outbox item; compares equal to the stored string."""

    PENDING = "pending"
    PROCESSING = "processing"
    COMPLETED = "completed"
    FAILED = "failed"

    def __str__(self) -> str:
        return self.value
