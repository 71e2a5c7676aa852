"""Keeps the values steps resolved (secrets, env) so logs can be scrubbed of them.

:class:`RedactingFilter` rewrites log records, replacing every value a step resolved in this
process by ``[REDACTED]`` (the core's one redaction rule). The engine installs it on headrace's
loggers; add it to your own handlers to cover connector code that logs.
"""

from __future__ import annotations

import logging
import threading

from headrace._core import redact_text

__all__ = ["RedactingFilter", "install_log_redaction", "known_secrets", "remember_secrets"]

_MAX = 10_000
_values: set[str] = set()
_lock = threading.Lock()


def remember_secrets(values: list[str]) -> None:
    with _lock:
        for v in values:
            if len(v) >= 3 and len(_values) < _MAX:
                _values.add(v)


def known_secrets() -> list[str]:
    with _lock:
        return list(_values)


class RedactingFilter(logging.Filter):
    """Masks resolved secret values in a record's message, arguments and exception text."""

    def filter(self, record: logging.LogRecord) -> bool:
        secrets = known_secrets()
        if not secrets:
            return True
        try:
            message = record.getMessage()
        except Exception:
            return True
        if record.exc_info and record.exc_info[1] is not None:
            formatted = logging.Formatter().formatException(record.exc_info)
            record.exc_text = redact_text(formatted, secrets)
            record.exc_info = None
        record.msg = redact_text(message, secrets)
        record.args = None
        return True


_installed = False


def install_log_redaction(
    names: tuple[str, ...] = (
        "headrace",
        "headrace.workflows",
        "headrace.worker",
        "headrace.connectors",
        "headrace.signals",
        "headrace.webhooks",
        "headrace.plugins",
    ),
) -> None:
    """Adds one :class:`RedactingFilter` to each of headrace's loggers (idempotent)."""
    global _installed
    if _installed:
        return
    shared = RedactingFilter()
    for name in names:
        logging.getLogger(name).addFilter(shared)
    _installed = True
