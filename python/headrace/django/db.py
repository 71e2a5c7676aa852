"""Which database the outbox lives in, and the core objects for it, built lazily.

The connection settings come from ``DATABASES[alias]`` (the live ``settings_dict``, so the test
database is used under Django's test runner) and reach the core as structured parameters: no URL
is assembled in Python and the password is never part of a message.
"""

from __future__ import annotations

import threading
from typing import Any

from django.db import connections

from headrace._core import DatabaseParams, ExternalOutboxSql
from headrace.django.conf import SettingsError, get_settings
from headrace.errors import ConfigError

__all__ = ["database_params", "dialect", "external_sql", "is_memory_sqlite", "open_state", "open_store", "reset"]

#: Django engines headrace supports, by ``connection.vendor``.
VENDORS = ("sqlite", "postgresql")
#: ``OPTIONS`` keys handed to the core's PostgreSQL connection; the rest are Django's own.
PG_OPTIONS = ("sslmode", "sslrootcert", "sslcert", "sslkey", "application_name", "options")

_lock = threading.Lock()
_sql: dict[str, ExternalOutboxSql] = {}


def outbox_alias() -> str:
    """The ``HEADRACE["DATABASE"]`` alias, checked against ``DATABASES``."""
    alias = get_settings().DATABASE
    if alias not in connections.settings:
        raise SettingsError(
            f"settings.HEADRACE['DATABASE'] is {alias!r}, which is not in DATABASES "
            f"(aliases: {', '.join(connections.settings) or 'none'})"
        )
    return alias


def dialect(alias: str) -> str:
    """``"sqlite"`` or ``"postgresql"`` for ``alias``; other engines are refused by name."""
    vendor = connections[alias].vendor
    if vendor not in VENDORS:
        engine = connections[alias].settings_dict.get("ENGINE")
        raise ConfigError(f"DATABASES[{alias!r}] uses {engine!r} ({vendor}); headrace supports SQLite and PostgreSQL")
    return vendor


def external_sql(alias: str) -> ExternalOutboxSql:
    """The core's outbox statements for ``alias``'s dialect under the ``HEADRACE`` settings."""
    sql = _sql.get(alias)
    if sql is None:
        settings = get_settings()
        with _lock:
            sql = _sql[alias] = ExternalOutboxSql(
                dialect(alias),
                lease_seconds=settings.LEASE_SECONDS,
                retry=settings.retry_policy(),
                max_payload_bytes=settings.MAX_PAYLOAD_BYTES,
            )
    return sql


def is_memory_sqlite(alias: str) -> bool:
    from django.db.backends.sqlite3.base import DatabaseWrapper as SQLiteWrapper

    conn = connections[alias]
    return isinstance(conn, SQLiteWrapper) and bool(conn.is_in_memory_db())


def database_params(alias: str) -> DatabaseParams:
    """Structured connection parameters for the core, from ``alias``'s live settings."""
    conn = connections[alias]
    vendor = dialect(alias)
    cfg = conn.settings_dict
    if vendor == "sqlite":
        if is_memory_sqlite(alias):
            raise ConfigError(
                f"DATABASES[{alias!r}] is an in-memory SQLite database, which only Django's own "
                "connection can see: the worker and stores need a file. Use headrace.django.testing."
                "run_outbox() in tests, or set DATABASES[...]['TEST']['NAME'] to a file path."
            )
        return DatabaseParams("sqlite", name=str(cfg["NAME"]))
    options = cfg.get("OPTIONS") or {}
    return DatabaseParams(
        "postgresql",
        name=cfg.get("NAME") or None,
        host=cfg.get("HOST") or None,
        port=int(cfg["PORT"]) if cfg.get("PORT") else None,
        user=cfg.get("USER") or None,
        password=cfg.get("PASSWORD") or None,
        options={k: str(v) for k, v in options.items() if k in PG_OPTIONS},
    )


def open_store(alias: str | None = None, **kwargs: Any) -> Any:
    """A new ``OutboxStore`` on ``alias`` (default: the outbox alias), schema checked not applied
    (``manage.py migrate`` owns the schema)."""
    from headrace.outbox import OutboxStore

    alias = alias or outbox_alias()
    settings = get_settings()
    kwargs.setdefault("lease_seconds", settings.LEASE_SECONDS)
    kwargs.setdefault("retry", settings.retry_policy())
    kwargs.setdefault("max_payload_bytes", settings.MAX_PAYLOAD_BYTES)
    kwargs.setdefault("migrate", False)
    return OutboxStore.connect(database_params(alias), **kwargs)


def open_state(alias: str | None = None) -> Any:
    """A new ``StateBackend`` on ``alias`` (default: the outbox alias)."""
    from headrace.state import StateBackend

    return StateBackend.connect(database_params(alias or outbox_alias()))


def reset() -> None:
    """Forgets cached objects (the settings changed)."""
    with _lock:
        _sql.clear()
