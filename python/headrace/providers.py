"""Providers: ``BaseProvider`` and the LLM contract, with a deterministic local echo provider.

A provider has a ``key``, a ``display_name``, a ``config_schema()`` (a JSON Schema dict, checked
by the core's validator) and ``normalize_error(exc)`` turning any failure into a
:class:`~headrace.errors.ConnectorError` (:func:`error_from_status` maps HTTP statuses: 429 is
retryable with its retry-after delay, 401 and 403 are not). LLM providers add
``chat(messages, options) -> str`` and ``count_tokens(text) -> int``. No network provider ships.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

from headrace.errors import ConfigError, ConnectorError, HeadraceError

__all__ = [
    "BaseProvider",
    "EchoLLMProvider",
    "LLMProvider",
    "error_from_status",
]

_STATUS_CODES: dict[int, tuple[str, bool]] = {
    400: ("invalid_argument", False),
    401: ("unauthorized", False),
    403: ("forbidden", False),
    404: ("not_found", False),
    408: ("timeout", True),
    409: ("conflict", False),
    422: ("invalid_argument", False),
    429: ("rate_limited", True),
}


def _retry_after(headers: Mapping[str, str] | None) -> float | None:
    if not headers:
        return None
    for name, value in headers.items():
        if name.lower() == "retry-after":
            try:
                return max(0.0, float(value))
            except (TypeError, ValueError):
                return None
    return None


def error_from_status(
    status: int,
    *,
    connector: str | None = None,
    headers: Mapping[str, str] | None = None,
    message: str | None = None,
) -> ConnectorError:
    """The :class:`ConnectorError` for an upstream HTTP status (5xx: ``unavailable``, retryable)."""
    if status in _STATUS_CODES:
        code, retryable = _STATUS_CODES[status]
    elif status >= 500:
        code, retryable = "unavailable", True
    else:
        code, retryable = "internal", False
    retry_after = _retry_after(headers) if status in (429, 503) else None
    text = message or f"upstream answered HTTP {status}"
    return ConnectorError(
        text, code=code, retryable=retryable, connector=connector, retry_after=retry_after, status=status
    )


class BaseProvider(ABC):  # noqa: B024 (abstract by intent; every method has a default)
    """Something headrace can configure and call: an LLM, a tool, a connector."""

    key: ClassVar[str] = ""
    display_name: ClassVar[str] = ""

    def __init__(self, config: Mapping[str, Any] | None = None) -> None:
        self.config = dict(config or {})

    @classmethod
    def config_schema(cls) -> dict[str, Any]:
        """The JSON Schema of this provider's configuration (default: any object)."""
        return {"type": "object"}

    @classmethod
    def validate_config(cls, config: Mapping[str, Any]) -> list[dict[str, str]]:
        """Per-field errors of ``config`` against :meth:`config_schema` (empty when valid)."""
        from headrace._core import JsonSchema

        errors: list[dict[str, str]] = JsonSchema(cls.config_schema()).errors(dict(config))
        return errors

    def normalize_error(self, exc: BaseException) -> ConnectorError:
        """Turns any exception into a :class:`ConnectorError` carrying this provider's key."""
        if isinstance(exc, ConnectorError):
            if exc.connector is None:
                exc.connector = self.key
            return exc
        status = getattr(exc, "status", None) or getattr(exc, "status_code", None)
        if isinstance(status, int):
            headers = getattr(exc, "headers", None)
            return error_from_status(
                status, connector=self.key, headers=headers if isinstance(headers, Mapping) else None
            )
        if isinstance(exc, TimeoutError):
            return ConnectorError("the upstream call timed out", code="timeout", retryable=True, connector=self.key)
        if isinstance(exc, ConnectionError):
            return ConnectorError(
                "the upstream could not be reached", code="unavailable", retryable=True, connector=self.key
            )
        if isinstance(exc, HeadraceError):
            return ConnectorError(exc.message, code=exc.code, retryable=exc.retryable, connector=self.key)
        # The text of an arbitrary exception may echo inputs or credentials: keep only its type.
        return ConnectorError(
            f"{type(exc).__name__} in {self.key or type(self).__name__}", code="internal", connector=self.key
        )


class LLMProvider(BaseProvider):
    """The LLM contract: ``chat(messages, options) -> str`` and ``count_tokens(text) -> int``."""

    @abstractmethod
    def chat(self, messages: Sequence[Mapping[str, Any]], options: Mapping[str, Any] | None = None) -> str:
        """A synchronous chat completion: the assistant's reply."""

    @abstractmethod
    def count_tokens(self, text: str) -> int:
        """An estimate of the tokens ``text`` uses."""


class EchoLLMProvider(LLMProvider):
    """A deterministic local provider for tests and examples: replies with the last user message.

    ``options["prefix"]`` (or config ``prefix``) is prepended; tokens are whitespace-separated words.
    """

    key = "echo"
    display_name = "Echo (local, deterministic)"

    @classmethod
    def config_schema(cls) -> dict[str, Any]:
        return {"type": "object", "properties": {"prefix": {"type": "string"}}, "additionalProperties": False}

    def chat(self, messages: Sequence[Mapping[str, Any]], options: Mapping[str, Any] | None = None) -> str:
        if not messages:
            raise ConfigError("chat() needs at least one message")
        for message in messages:
            if not isinstance(message, Mapping) or "role" not in message or "content" not in message:
                raise ConfigError(f"a chat message is a mapping with 'role' and 'content', got {message!r}")
        user = [m for m in messages if m["role"] == "user"]
        reply = str((user or list(messages))[-1]["content"])
        prefix = (options or {}).get("prefix", self.config.get("prefix", ""))
        return f"{prefix}{reply}"

    def count_tokens(self, text: str) -> int:
        return len(text.split())
