"""headrace: a Rust runtime for moving data in and out of external services.

Pillars: the transactional outbox (``headrace.outbox``), the policy runner (``headrace.runner``,
``Backend`` and ``PolicyManager``), the state backend
and the exception hierarchy (``headrace.errors``).
"""

from __future__ import annotations

import logging as _logging

from headrace._core import __version__, install_log_bridge
from headrace.backend import Backend, Metadata
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
from headrace.runner import (
    Config,
    DryRunSink,
    NullSink,
    OutboxSink,
    Policy,
    PolicyManager,
    Run,
    RunSource,
    RunStatus,
)

# The core's log events reach Python's logging under the "headrace." logger names.
install_log_bridge(min(_logging.getLogger("headrace").getEffectiveLevel(), _logging.INFO))

__all__ = [
    "Backend",
    "Config",
    "ConfigError",
    "DryRunSink",
    "HeadraceError",
    "IngestError",
    "IngestRejected",
    "IngestUnavailable",
    "InvalidStatusTransition",
    "InvocationNotFoundError",
    "LeaseLost",
    "Metadata",
    "NotFoundError",
    "NullSink",
    "OptimisticClaimOutboxStore",
    "OutboxItem",
    "OutboxReaper",
    "OutboxSink",
    "OutboxStatus",
    "OutboxStore",
    "Policy",
    "PolicyManager",
    "RetryPolicy",
    "Run",
    "RunSource",
    "RunStatus",
    "SkipLockedClaimOutboxStore",
    "StoreError",
    "StoreUnavailable",
    "__version__",
]
