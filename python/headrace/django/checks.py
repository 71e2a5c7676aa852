"""System checks for the ``HEADRACE`` setting (``manage.py check``)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from django.apps import apps
from django.core import checks
from django.db import connections, router

from headrace.errors import ConfigError

__all__ = ["check_settings", "register"]


def register() -> None:
    checks.register(check_settings, "headrace")


def check_settings(app_configs: Sequence[Any] | None = None, **kwargs: Any) -> list[checks.CheckMessage]:
    from headrace.django import conf

    try:
        settings = conf.parse(getattr(conf.django_settings(), conf.SETTING, None))
    except ConfigError as exc:
        return [checks.Error(str(exc), id="headrace.E001", hint="Fix settings.HEADRACE.")]
    alias = settings.DATABASE
    if alias not in connections.settings:
        return [
            checks.Error(
                f"HEADRACE['DATABASE'] is {alias!r}, which is not in DATABASES",
                hint=f"Use one of: {', '.join(connections.settings)}.",
                id="headrace.E002",
            )
        ]
    messages: list[checks.CheckMessage] = []
    connection = connections[alias]
    if connection.vendor not in ("sqlite", "postgresql"):
        messages.append(
            checks.Error(
                f"DATABASES[{alias!r}] uses {connection.settings_dict.get('ENGINE')!r}; "
                "headrace supports SQLite and PostgreSQL",
                id="headrace.E003",
            )
        )
    for topic, path in settings.HANDLERS.items():
        try:
            _import(path)
        except Exception as exc:  # any import failure is the user's to see
            messages.append(
                checks.Error(
                    f"HEADRACE['HANDLERS'][{topic!r}] = {path!r} cannot be imported: {exc}",
                    id="headrace.E004",
                )
            )
    models = [m for m in apps.get_models() if m._meta.app_label != "headrace"]
    if models and all(router.db_for_write(m) != alias for m in models):
        messages.append(
            checks.Warning(
                f"HEADRACE['DATABASE'] is {alias!r} but no model is written there: an enqueue "
                "is not atomic with writes to another database",
                hint="Point HEADRACE['DATABASE'] at the alias your business data lives in.",
                id="headrace.W001",
            )
        )
    if connection.vendor == "sqlite":
        messages.extend(_sqlite_warnings(alias, connection.settings_dict))
        messages.extend(_sqlite_library_warning(alias))
    return messages


def _sqlite_library_warning(alias: str) -> list[checks.CheckMessage]:
    from headrace._core import sqlite_library

    version, bundled = sqlite_library()
    if not bundled:
        return []
    return [
        checks.Warning(
            f"DATABASES[{alias!r}] is SQLite and this headrace build carries its own SQLite {version}: "
            "a process that opens the database through Django and through headrace (the worker) has "
            "two SQLite libraries that do not see each other's file locks, and can lose writes",
            hint="Install headrace built against the system SQLite (pip install --no-binary headrace "
            "headrace), or use PostgreSQL.",
            id="headrace.W004",
        )
    ]


def _import(path: str) -> Any:
    from headrace.integrations import import_dotted

    return import_dotted(path)


def _sqlite_warnings(alias: str, settings_dict: dict[str, Any]) -> list[checks.CheckMessage]:
    import django

    options = settings_dict.get("OPTIONS") or {}
    init = str(options.get("init_command", "")).lower().replace(" ", "")
    messages: list[checks.CheckMessage] = []
    if django.VERSION < (5, 1):
        return messages  # no OPTIONS for either; WAL persists once the core has opened the file
    if "journal_mode=wal" not in init:
        messages.append(
            checks.Warning(
                f"DATABASES[{alias!r}] is SQLite without WAL: the worker's writes and your "
                "requests will block each other",
                hint="Add OPTIONS={'init_command': 'PRAGMA journal_mode=WAL;'}.",
                id="headrace.W002",
            )
        )
    if str(options.get("transaction_mode", "")).upper() != "IMMEDIATE":
        messages.append(
            checks.Warning(
                f"DATABASES[{alias!r}] is SQLite with deferred transactions: a transaction that "
                "reads then writes can fail with 'database is locked' while the worker writes",
                hint="Add OPTIONS={'transaction_mode': 'IMMEDIATE'}.",
                id="headrace.W003",
            )
        )
    return messages
