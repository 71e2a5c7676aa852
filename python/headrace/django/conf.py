"""The ``HEADRACE`` setting, parsed into a typed, validated object.

``settings.HEADRACE`` is one dict. Unknown keys are rejected with a did-you-mean, every value's
type is checked, and the parsed object is rebuilt when the setting changes (``override_settings``).
Read it with :func:`get_settings`; nothing here opens a connection.
"""

from __future__ import annotations

import difflib
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import Any

from django.core.exceptions import ImproperlyConfigured

from headrace.errors import ConfigError

__all__ = ["HeadraceSettings", "connect_setting_changed", "get_settings"]

SETTING = "HEADRACE"

#: ``RETRY`` keys, as :class:`headrace.RetryPolicy` takes them.
RETRY_KEYS = ("max_attempts", "base_seconds", "factor", "max_seconds", "jitter")


class SettingsError(ImproperlyConfigured, ConfigError):
    """``settings.HEADRACE`` is wrong; the message names the key and what to write instead."""


@dataclass(frozen=True)
class HeadraceSettings:
    """The parsed ``HEADRACE`` setting (defaults shown)."""

    #: The ``DATABASES`` alias holding the outbox: the one your business rows live in, or the
    #: enqueue is not atomic with them.
    DATABASE: str = "default"
    #: Topic → dotted path of the handler (a callable or a ``QueuedClient``) run by the worker.
    HANDLERS: Mapping[str, str] = field(default_factory=dict)
    #: Dotted paths of ``IntegrationImpl`` classes to register (``headrace.integrations.registry``).
    INTEGRATIONS: tuple[str, ...] = ()
    #: Dotted paths of ``BridgeImpl`` classes the worker runs when due.
    BRIDGES: tuple[str, ...] = ()
    #: A policies YAML file (or a dict) the worker runs on the policy runner; chunks go to the outbox.
    POLICIES: str | Mapping[str, Any] | None = None
    #: ``RetryPolicy`` keyword arguments (max_attempts, base_seconds, factor, max_seconds, jitter).
    RETRY: Mapping[str, float] = field(default_factory=dict)
    LEASE_SECONDS: float = 300.0
    MAX_PAYLOAD_BYTES: int = 1024 * 1024
    #: Refuse ``enqueue`` outside ``transaction.atomic()``.
    REQUIRE_TRANSACTION: bool = False
    BATCH_SIZE: int = 100
    CONCURRENCY: int = 1
    POLL_INTERVAL: float = 1.0
    REAPER_INTERVAL: float = 60.0
    #: Record every dispatch (and task results) in the state backend on the same database.
    STATE: bool = True
    #: ``headrace_healthcheck`` fails when no worker heartbeat is younger than this (seconds).
    HEARTBEAT_MAX_AGE: float = 60.0
    #: The health view (``/headrace/health/``) answers 503 when the oldest due pending item has
    #: waited longer than this (seconds); ``None``: no limit.
    MAX_PENDING_AGE: float | None = None
    #: The health view answers 503 when no worker heartbeat is fresh.
    HEALTH_REQUIRE_WORKER: bool = True
    #: The policy API (``headrace.django.urls``) also accepts ``Authorization: Bearer <token>``
    #: with this token; ``None``: staff sessions only.
    API_TOKEN: str | None = None

    def retry_policy(self) -> Any:
        from headrace.outbox import RetryPolicy

        options: dict[str, Any] = dict(self.RETRY)
        return RetryPolicy(**options)


_TYPES: dict[str, tuple[type, ...]] = {
    "DATABASE": (str,),
    "HANDLERS": (Mapping,),
    "INTEGRATIONS": (list, tuple),
    "BRIDGES": (list, tuple),
    "POLICIES": (str, Mapping, type(None)),
    "RETRY": (Mapping,),
    "LEASE_SECONDS": (int, float),
    "MAX_PAYLOAD_BYTES": (int,),
    "REQUIRE_TRANSACTION": (bool,),
    "BATCH_SIZE": (int,),
    "CONCURRENCY": (int,),
    "POLL_INTERVAL": (int, float),
    "REAPER_INTERVAL": (int, float),
    "STATE": (bool,),
    "HEARTBEAT_MAX_AGE": (int, float),
    "MAX_PENDING_AGE": (int, float, type(None)),
    "HEALTH_REQUIRE_WORKER": (bool,),
    "API_TOKEN": (str, type(None)),
}
_POSITIVE = ("LEASE_SECONDS", "MAX_PAYLOAD_BYTES", "BATCH_SIZE", "CONCURRENCY", "POLL_INTERVAL", "HEARTBEAT_MAX_AGE")


def _did_you_mean(key: str, choices: list[str]) -> str:
    close = difflib.get_close_matches(key, choices, n=1)
    return f" Did you mean {close[0]!r}?" if close else ""


def _type_name(types: tuple[type, ...]) -> str:
    return " or ".join("None" if t is type(None) else t.__name__ for t in types)


def parse(raw: Any) -> HeadraceSettings:
    """Checks ``raw`` (the ``HEADRACE`` dict) and returns the typed settings."""
    if raw is None:
        return HeadraceSettings()
    if not isinstance(raw, Mapping):
        raise SettingsError(f"settings.{SETTING} must be a dict, got {type(raw).__name__}")
    known = [f.name for f in fields(HeadraceSettings)]
    values: dict[str, Any] = {}
    for key, value in raw.items():
        if key not in known:
            raise SettingsError(
                f"settings.{SETTING} has unknown key {key!r}.{_did_you_mean(str(key).upper(), known)} "
                f"Known keys: {', '.join(known)}"
            )
        types = _TYPES[key]
        if (isinstance(value, bool) and bool not in types) or not isinstance(value, types):
            raise SettingsError(
                f"settings.{SETTING}[{key!r}] must be {_type_name(types)}, got {type(value).__name__} {value!r}"
            )
        if key in _POSITIVE and isinstance(value, (int, float)) and value <= 0:
            raise SettingsError(f"settings.{SETTING}[{key!r}] must be > 0, got {value!r}")
        values[key] = value
    for topic, path in dict(values.get("HANDLERS", {})).items():
        if not isinstance(topic, str) or not topic or not isinstance(path, str) or "." not in path:
            raise SettingsError(
                f"settings.{SETTING}['HANDLERS'] maps topics to dotted paths like "
                f"'shop.handlers.send_mail', got {topic!r}: {path!r}"
            )
    for key in ("INTEGRATIONS", "BRIDGES"):
        values[key] = tuple(values.get(key, ()))
        for path in values[key]:
            if not isinstance(path, str) or "." not in path:
                raise SettingsError(f"settings.{SETTING}[{key!r}] holds dotted paths, got {path!r}")
    for name in dict(values.get("RETRY", {})):
        if name not in RETRY_KEYS:
            raise SettingsError(
                f"settings.{SETTING}['RETRY'] has unknown key {name!r}.{_did_you_mean(str(name), list(RETRY_KEYS))} "
                f"Known keys: {', '.join(RETRY_KEYS)}"
            )
    parsed = HeadraceSettings(**values)
    if parsed.RETRY:
        try:
            parsed.retry_policy()
        except (ConfigError, TypeError) as exc:
            raise SettingsError(f"settings.{SETTING}['RETRY'] is invalid: {exc}") from exc
    return parsed


_cache: HeadraceSettings | None = None
_lock = threading.Lock()


def django_settings() -> Any:
    from django.conf import settings

    return settings


def get_settings() -> HeadraceSettings:
    """The parsed ``HEADRACE`` setting (cached; rebuilt when the setting changes)."""
    global _cache
    cached = _cache
    if cached is not None:
        return cached
    from django.conf import settings

    with _lock:
        _cache = parse(getattr(settings, SETTING, None))
        return _cache


def _reset(*, setting: str, **_: Any) -> None:
    global _cache
    if setting in (SETTING, "DATABASES"):
        _cache = None
        from headrace.django import db

        db.reset()


def connect_setting_changed() -> None:
    from django.test.signals import setting_changed

    setting_changed.connect(_reset, dispatch_uid="headrace.django.conf")
