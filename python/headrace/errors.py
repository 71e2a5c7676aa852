"""headrace's exception hierarchy.

Every class has a stable snake_case ``code`` and a ``retryable`` flag. The error table (code,
class, retryable) is owned by the Rust core (``src/error.rs``): the core raises these exact
classes, and this module takes each class's ``code`` and ``retryable`` from the table at import
(a class the table names but this module lacks fails the import). Applications may subclass
them.
"""

from __future__ import annotations

from headrace import _core

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
    "describe",
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


class IngestRejected(IngestError):
    """Permanent ingest failure: the data or request is wrong; do not retry."""


class IngestUnavailable(IngestError):
    """Transient ingest failure: the destination is unavailable; retry later."""


class ConfigError(HeadraceError, ValueError):
    """Invalid URL, policy, schedule, setting or argument."""


class StoreError(HeadraceError):
    """A database operation failed."""


class StoreUnavailable(StoreError):
    """The database is unreachable or busy; retry later."""


class LeaseLost(HeadraceError):
    """An acknowledgement or lease extension by a worker that no longer holds the lease."""

    item_ids: list[int]

    def __init__(self, message: str = "", *args: object, item_ids: list[int] | None = None, **kwargs: object) -> None:
        super().__init__(message, *args, **kwargs)  # type: ignore[arg-type]
        self.item_ids = list(item_ids or [])


class NotFoundError(HeadraceError, LookupError):
    """A record that does not exist."""


class InvocationNotFoundError(NotFoundError):
    """An invocation id the state backend does not know."""


class InvalidStatusTransition(HeadraceError):
    """A status change the transition table forbids."""


def is_retryable(exc: BaseException) -> bool:
    """Whether an outbox handler's failure ``exc`` may be retried.

    The one classification rule (``failure_is_retryable`` in ``src/error.rs``): an exception with
    a ``retryable`` attribute says so itself (every headrace error has one); any other exception
    raised by a handler is retried until the item's attempts run out. (Raised by a runner backend,
    sink or ingest callback, the same exception is an unexpected ``IngestError`` instead.)
    """
    return _core.is_retryable(exc, "handler")


def describe(exc: BaseException) -> str:
    """``Type: message`` of ``exc`` (the type alone when the message is empty)."""
    return _core.describe_exception(exc)


def _apply_the_error_table() -> None:
    """Gives each class the core's table names its ``code`` and ``retryable``; fails the import
    when the table names a class this module lacks."""
    for code, class_name, retryable in _core.error_table():
        cls = globals().get(class_name)
        if not (isinstance(cls, type) and issubclass(cls, HeadraceError)):
            raise ImportError(f"headrace.errors has no class {class_name} for the core's error {code!r}")
        cls.code, cls.retryable = code, retryable


_apply_the_error_table()

# The extension points' classes (#13) live in their own module; re-exported here.
from headrace.errors_automate import (  # noqa: E402
    ConnectorError,
    PluginNotFoundError,
    SecretNotFoundError,
    TemplateError,
    WebhookVerificationError,
)

__all__ += [
    "ConnectorError",
    "PluginNotFoundError",
    "SecretNotFoundError",
    "TemplateError",
    "WebhookVerificationError",
]
