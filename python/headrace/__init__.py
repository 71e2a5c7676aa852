"""headrace: a Rust runtime for moving data in and out of external services.

Pillars: the transactional outbox (``headrace.outbox``), the policy runner, the state backend
and the exception hierarchy (``headrace.errors``).
"""

from __future__ import annotations

from headrace._core import __version__
from headrace.errors import (
    ConfigError,
    HeadraceError,
    IngestError,
    IngestRejected,
    IngestUnavailable,
    InvalidStatusTransition,
    InvocationNotFoundError,
    LeaseLost,
    NotFoundError,
    StoreError,
    StoreUnavailable,
)
from headrace.outbox import (
    OptimisticClaimOutboxStore,
    OutboxItem,
    OutboxReaper,
    OutboxStatus,
    OutboxStore,
    RetryPolicy,
    SkipLockedClaimOutboxStore,
)

__all__ = [
    "ConfigError",
    "HeadraceError",
    "IngestError",
    "IngestRejected",
    "IngestUnavailable",
    "InvalidStatusTransition",
    "InvocationNotFoundError",
    "LeaseLost",
    "NotFoundError",
    "OptimisticClaimOutboxStore",
    "OutboxItem",
    "OutboxReaper",
    "OutboxStatus",
    "OutboxStore",
    "RetryPolicy",
    "SkipLockedClaimOutboxStore",
    "StoreError",
    "StoreUnavailable",
    "__version__",
]
