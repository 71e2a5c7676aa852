"""The exception classes of the extension points (#13), re-exported by :mod:`headrace.errors`.

Every one carries ``code`` and ``retryable`` like the rest of the hierarchy, and none of their
messages ever holds a resolved secret (the engine redacts before raising or storing).
"""

from __future__ import annotations

from typing import Any

from headrace.errors import ConfigError, HeadraceError, NotFoundError

__all__ = [
    "ConnectorError",
    "PluginNotFoundError",
    "SecretNotFoundError",
    "TemplateError",
    "WebhookVerificationError",
]


class PluginNotFoundError(NotFoundError):
    """A plugin key no registry knows; the same class for every kind of plugin."""

    code = "plugin_not_found"

    def __init__(self, message: str = "", *args: object, kind: str = "", key: str = "", **kwargs: Any) -> None:
        super().__init__(message, *args, **kwargs)
        self.kind = kind
        self.key = key


class SecretNotFoundError(HeadraceError, LookupError):
    """A secrets backend does not hold ``key``. The message names the key, never a value."""

    code = "secret_not_found"
    retryable = False

    def __init__(self, message: str = "", *args: object, key: str = "", **kwargs: Any) -> None:
        if not message and key:
            message = f"secret {key!r} was not found"
        super().__init__(message, *args, **kwargs)
        self.key = key


class TemplateError(ConfigError):
    """A step input template failed: ``variable`` names an undefined variable when that was why."""

    code = "template_error"

    def __init__(self, message: str = "", *args: object, variable: str | None = None, **kwargs: Any) -> None:
        super().__init__(message, *args, **kwargs)
        self.variable = variable


class WebhookVerificationError(HeadraceError):
    """A webhook's signature, timestamp or headers did not verify (answered with 401)."""

    code = "webhook_verification_failed"
    retryable = False


class ConnectorError(HeadraceError):
    """What every connector failure becomes: a code, a safe message, ``retryable``, the connector.

    ``code`` is one of ``invalid_argument``, ``unauthorized``, ``forbidden``, ``not_found``,
    ``rate_limited``, ``timeout``, ``unavailable``, ``conflict`` and ``internal``.
    ``retry_after`` (seconds) is set for rate limits; ``errors`` lists failing input fields.
    """

    code = "internal"
    retryable = False

    def __init__(
        self,
        message: str = "",
        *args: object,
        code: str | None = None,
        retryable: bool | None = None,
        connector: str | None = None,
        retry_after: float | None = None,
        errors: list[dict[str, str]] | None = None,
        status: int | None = None,
    ) -> None:
        super().__init__(message, *args, code=code, retryable=retryable)
        self.connector = connector
        self.retry_after = retry_after
        self.errors = list(errors or [])
        self.status = status

    def to_dict(self) -> dict[str, Any]:
        return {
            "code": self.code,
            "message": self.message,
            "retryable": self.retryable,
            "connector": self.connector,
            "retry_after": self.retry_after,
            "errors": self.errors,
        }

    def __repr__(self) -> str:
        return f"ConnectorError(code={self.code!r}, connector={self.connector!r}, message={self.message!r})"
