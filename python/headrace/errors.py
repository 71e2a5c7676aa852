"""headrace's exception hierarchy.

Every class has a stable snake_case ``code`` and a ``retryable`` flag. The Rust core raises
these exact classes (one mapping in ``src/bindings/errors.rs``); applications may subclass them.
"""

from __future__ import annotations

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
    "StoreError",
    "StoreUnavailable",
    "is_retryable",
]


class HeadraceError(Exception):
    """Base of every error headrace raises."""

    code: str = "headrace_error"
    retryable: bool = False

    def __init__(
        self, message: str = "", *args: object, code: str | None = None, retryable: bool | None = None
    ) -> None:
        super().__init__(message, *args)
        self.message = message
        if code is not None:
            self.code = code
        if retryable is not None:
            self.retryable = retryable

    def __str__(self) -> str:
        return self.message if len(self.args) <= 1 else super().__str__()


class IngestError(HeadraceError):
    """An ingest failed for a reason that is neither clearly permanent nor transient."""

    code = "ingest_error"
    retryable = False


class IngestRejected(IngestError):
    """Permanent ingest failure: the data or request is wrong; do not retry."""

    code = "ingest_rejected"
    retryable = False


class IngestUnavailable(IngestError):
    """Transient ingest failure: the destination is unavailable; retry later."""

    code = "ingest_unavailable"
    retryable = True


class ConfigError(HeadraceError, ValueError):
    """Invalid URL, policy, schedule, setting or argument."""

    code = "config_error"
    retryable = False


class StoreError(HeadraceError):
    """A database operation failed."""

    code = "store_error"
    retryable = False


class StoreUnavailable(StoreError):
    """The database is unreachable or busy; retry later."""

    code = "store_unavailable"
    retryable = True


class LeaseLost(HeadraceError):
    """An acknowledgement or lease extension by a worker that no longer holds the lease."""

    code = "lease_lost"
    retryable = False
    item_ids: list[int]

    def __init__(self, message: str = "", *args: object, item_ids: list[int] | None = None, **kwargs: object) -> None:
        super().__init__(message, *args, **kwargs)  # type: ignore[arg-type]
        self.item_ids = list(item_ids or [])


class NotFoundError(HeadraceError, LookupError):
    """A record that does not exist."""

    code = "not_found"
    retryable = False


class InvocationNotFoundError(NotFoundError):
    """An invocation id the state backend does not know."""

    code = "invocation_not_found"
    retryable = False


class InvalidStatusTransition(HeadraceError):
    """A status change the transition table forbids."""

    code = "invalid_status_transition"
    retryable = False


def is_retryable(exc: BaseException) -> bool:
    """Whether retrying after ``exc`` may succeed.

    headrace errors carry ``retryable``; other exceptions are classified by a ``retryable``
    attribute when they have one, else treated as retryable (until attempts run out).
    """
    flag = getattr(exc, "retryable", None)
    return True if flag is None else bool(flag)
