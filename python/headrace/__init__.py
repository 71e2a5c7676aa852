"""headrace: a Rust runtime for moving data in and out of external services.

Pillars: the transactional outbox (``headrace.outbox``), the policy runner, the state backend
and the exception hierarchy (``headrace.errors``).
"""

from __future__ import annotations

import logging as _logging

from headrace._core import __version__, install_log_bridge
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

# The core's log events reach Python's logging under the "headrace." logger names.
install_log_bridge(min(_logging.getLogger("headrace").getEffectiveLevel(), _logging.INFO))

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
