"""One schema source: Django's migrate and the Rust side accept each other's databases."""

from __future__ import annotations

import os
import tempfile
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from django.db import connection
from django.db.migrations.executor import MigrationExecutor
from django.db.migrations.loader import MigrationLoader
from django.utils.connection import ConnectionDoesNotExist  # noqa: F401

from headrace import OutboxStore
from headrace._core import DatabaseParams, schema_plan
from headrace.django.schema import ApplyCoreSchema, core_versions

HEADRACE_TARGET = None


def ledger(conn: Any) -> list[str]:
    with conn.cursor() as cursor:
        cursor.execute("SELECT version FROM headrace_schema_migrations ORDER BY version")
        return [row[0] for row in cursor.fetchall()]


def latest_headrace_migration() -> tuple[str, str]:
    loader = MigrationLoader(None, ignore_no_migrations=True)
    return ("headrace", max(name for app, name in loader.disk_migrations if app == "headrace"))


def test_every_core_version_has_a_django_migration() -> None:
    loader = MigrationLoader(None, ignore_no_migrations=True)
    named = set()
    for (app, _name), migration in loader.disk_migrations.items():
        if app == "headrace":
            for op in migration.operations:
                if isinstance(op, ApplyCoreSchema):
                    named.update(op.versions)
    missing = (set(core_versions("sqlite")) | set(core_versions("postgresql"))) - named
    assert not missing, f"core schema versions without a headrace Django migration: {sorted(missing)}"


@pytest.mark.django_db
def test_migrate_from_empty_records_every_core_version_once() -> None:
    assert ledger(connection) == sorted(core_versions(connection.vendor))
    with connection.cursor() as cursor:
        cursor.execute("SELECT COUNT(*) FROM headrace_outbox")
        assert cursor.fetchone()[0] == 0


def _wrapper(name: str) -> Any:
    """A Django connection to another database of the same engine."""
    from django.db import connections
    from django.db.utils import load_backend

    alias = f"scratch_{uuid.uuid4().hex[:6]}"
    settings_dict = {**connection.settings_dict, "NAME": name}
    backend = load_backend(settings_dict["ENGINE"])
    wrapper = backend.DatabaseWrapper(settings_dict, alias=alias)
    connections.settings[alias] = settings_dict
    connections[alias] = wrapper
    return wrapper


@pytest.fixture
def scratch_database() -> Iterator[str]:
    """An empty database of the suite's engine, dropped afterwards."""
    if connection.vendor == "sqlite":
        path = os.path.join(tempfile.mkdtemp(), "scratch.sqlite3")
        yield path
        return
    import psycopg

    name = f"hr_scratch_{uuid.uuid4().hex[:10]}"
    params = {k: v for k, v in connection.get_connection_params().items() if k in ("host", "port", "user", "password")}
    admin = psycopg.connect(dbname="postgres", autocommit=True, **params)
    admin.execute(f'CREATE DATABASE "{name}"')
    try:
        yield name
    finally:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.close()


def _params(name: str) -> DatabaseParams:
    s = connection.settings_dict
    if connection.vendor == "sqlite":
        return DatabaseParams("sqlite", name=name)
    return DatabaseParams(
        "postgresql",
        name=name,
        host=s.get("HOST") or None,
        port=int(s["PORT"]) if s.get("PORT") else None,
        user=s.get("USER") or None,
        password=s.get("PASSWORD") or None,
    )


def test_migrate_on_top_of_a_schema_the_rust_side_made(scratch_database: str, django_db_blocker: Any) -> None:
    with django_db_blocker.unblock():
        _migrate_on_top_of_rust(scratch_database)


def _migrate_on_top_of_rust(scratch_database: str) -> None:
    store = OutboxStore.connect(_params(scratch_database))
    item = store.enqueue("made.by.rust", {"n": 1})
    rust_ledger = None
    conn = _wrapper(scratch_database)
    try:
        rust_ledger = ledger(conn)
        assert rust_ledger == sorted(core_versions(conn.vendor))
        executor = MigrationExecutor(conn)
        executor.migrate([latest_headrace_migration()])
        assert ledger(conn) == rust_ledger  # nothing applied twice
        with conn.cursor() as cursor:
            cursor.execute("SELECT topic FROM headrace_outbox WHERE id = %s", [item])
            assert cursor.fetchone()[0] == "made.by.rust"
        assert MigrationExecutor(conn).migration_plan([latest_headrace_migration()]) == []
    finally:
        conn.close()
        close = getattr(store, "close", None)
        if close:
            close()


def test_the_rust_side_accepts_a_database_django_migrated(scratch_database: str, django_db_blocker: Any) -> None:
    with django_db_blocker.unblock():
        _rust_on_top_of_django(scratch_database)


def _rust_on_top_of_django(scratch_database: str) -> None:
    conn = _wrapper(scratch_database)
    try:
        MigrationExecutor(conn).migrate([latest_headrace_migration()])
        django_ledger = ledger(conn)
        store = OutboxStore.connect(_params(scratch_database))  # migrate=True: nothing left to do
        store.enqueue("made.by.django", {"n": 1})
        assert ledger(conn) == django_ledger
        close = getattr(store, "close", None)
        if close:
            close()
    finally:
        conn.close()


def test_the_schema_plan_splits_the_core_sql_into_statements() -> None:
    for vendor in ("sqlite", "postgresql"):
        plan = schema_plan(vendor)
        for version, statements in plan["steps"]:
            assert statements and all(not s.rstrip().endswith(";") for s in statements), version
    assert schema_plan("postgresql")["lock"].startswith("SELECT pg_advisory_xact_lock")
    assert schema_plan("sqlite")["lock"] is None


@pytest.mark.django_db
def test_postgres_rows_inserted_by_any_client_notify_listeners() -> None:
    if connection.vendor != "postgresql":
        pytest.skip("the notify trigger is PostgreSQL's")
    import psycopg

    params = {
        k: v
        for k, v in connection.get_connection_params().items()
        if k in ("host", "port", "user", "password", "dbname")
    }
    listener = psycopg.connect(autocommit=True, **params)
    try:
        listener.execute("LISTEN headrace_outbox")
        writer = psycopg.connect(autocommit=False, **params)
        writer.execute(
            "INSERT INTO headrace_outbox (topic, payload, max_attempts, run_at, created_at, updated_at) "
            "VALUES ('raw.sql', '{}', 1, now(), now(), now())"
        )
        assert list(listener.notifies(timeout=0.2, stop_after=1)) == []  # not before commit
        writer.commit()
        (note,) = list(listener.notifies(timeout=5, stop_after=1))
        assert note.channel == "headrace_outbox"
        writer.execute("DELETE FROM headrace_outbox WHERE topic = 'raw.sql'")
        writer.commit()
        writer.close()
    finally:
        listener.close()
