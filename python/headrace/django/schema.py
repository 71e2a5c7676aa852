"""Django migrations that apply the core's own schema (``migrations/{sqlite,postgres}/``).

Each Django migration names the core versions it brings in. They run through the core's one
ledger (``headrace_schema_migrations``), so a database the Rust side migrated is accepted by
``manage.py migrate`` and the other way round, and no step is ever applied twice.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from django.db import migrations

from headrace import _core

__all__ = ["ApplyCoreSchema", "apply_core_schema", "core_versions"]


def _dialect(vendor: str) -> str:
    if vendor not in ("sqlite", "postgresql"):
        raise migrations.exceptions.IrreversibleError(  # type: ignore[attr-defined]
            f"headrace supports SQLite and PostgreSQL, not {vendor}"
        )
    return vendor


def core_versions(vendor: str) -> list[str]:
    """Every core schema version for ``vendor``, in order."""
    return [version for version, _ in _core.schema_plan(vendor)["steps"]]


def apply_core_schema(connection: Any, versions: Sequence[str] | None = None) -> list[str]:
    """Applies the core steps named in ``versions`` (default: all) that the ledger lacks, on
    ``connection`` inside its current transaction; returns the versions applied now."""
    plan = _core.schema_plan(_dialect(connection.vendor))
    wanted = None if versions is None else set(versions)
    applied_now = []
    with connection.cursor() as cursor:
        if plan["lock"]:
            cursor.execute(plan["lock"])
        for statement in plan["ledger"]:
            cursor.execute(statement)
        cursor.execute(plan["applied"])
        done = {row[0] for row in cursor.fetchall()}
        for version, statements in plan["steps"]:
            if version in done or (wanted is not None and version not in wanted):
                continue
            for statement in statements:
                cursor.execute(statement)
            cursor.execute(plan["record"], [version])
            applied_now.append(version)
    return applied_now


class ApplyCoreSchema(migrations.RunPython):
    """Applies the named core schema versions (those a dialect does not have are skipped)."""

    def __init__(self, versions: Sequence[str]) -> None:
        self.versions = tuple(versions)

        def forwards(apps: Any, schema_editor: Any) -> None:
            apply_core_schema(schema_editor.connection, self.versions)

        super().__init__(forwards, migrations.RunPython.noop, elidable=False)

    def describe(self) -> str:
        return f"Apply headrace core schema {', '.join(self.versions)}"

    def deconstruct(self) -> tuple[str, list[Any], dict[str, Any]]:
        return (f"{__name__}.{type(self).__qualname__}", [list(self.versions)], {})
