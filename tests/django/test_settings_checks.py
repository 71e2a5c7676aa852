"""The HEADRACE setting and the system checks."""

from __future__ import annotations

from typing import Any

import pytest
from django.core import checks
from django.test import override_settings

from headrace.django.checks import check_settings
from headrace.django.conf import HeadraceSettings, SettingsError, get_settings, parse
from headrace.errors import ConfigError


def ids(messages: list[Any]) -> list[str]:
    return [m.id for m in messages]


def test_defaults_and_a_typed_object() -> None:
    parsed = parse({"HANDLERS": {"t": "shop.handlers.order_placed"}, "LEASE_SECONDS": 30})
    assert isinstance(parsed, HeadraceSettings)
    assert parsed.DATABASE == "default" and parsed.LEASE_SECONDS == 30 and parsed.CONCURRENCY == 1
    assert parse(None) == HeadraceSettings()


def test_unknown_keys_are_rejected_with_a_did_you_mean() -> None:
    with pytest.raises(SettingsError, match=r"unknown key 'LEASE_SECOND'\. Did you mean 'LEASE_SECONDS'"):
        parse({"LEASE_SECOND": 30})
    with pytest.raises(SettingsError, match=r"\['RETRY'\] has unknown key 'max_attempt'. Did you mean 'max_attempts'"):
        parse({"RETRY": {"max_attempt": 3}})


def test_types_and_ranges_are_checked_naming_the_value() -> None:
    with pytest.raises(SettingsError, match=r"\['CONCURRENCY'\] must be int, got str '2'"):
        parse({"CONCURRENCY": "2"})
    with pytest.raises(SettingsError, match=r"must be bool, got int 1"):
        parse({"REQUIRE_TRANSACTION": 1})
    with pytest.raises(SettingsError, match="must be > 0"):
        parse({"LEASE_SECONDS": 0})
    with pytest.raises(SettingsError, match="dotted paths"):
        parse({"HANDLERS": {"t": "nodots"}})
    with pytest.raises(SettingsError, match="RETRY'] is invalid"):
        parse({"RETRY": {"max_attempts": 0}})


def test_settings_errors_are_config_errors_and_improperly_configured() -> None:
    from django.core.exceptions import ImproperlyConfigured

    assert issubclass(SettingsError, ConfigError) and issubclass(SettingsError, ImproperlyConfigured)


def test_the_setting_is_re_read_when_it_changes() -> None:
    assert get_settings().POLL_INTERVAL == 0.05
    with override_settings(HEADRACE={"POLL_INTERVAL": 2.5}):
        assert get_settings().POLL_INTERVAL == 2.5
    assert get_settings().POLL_INTERVAL == 0.05


def test_a_clean_configuration_has_no_errors() -> None:
    errors = [m for m in check_settings() if m.level >= checks.ERROR]
    assert errors == []


def test_bad_settings_are_reported_by_manage_py_check() -> None:
    with override_settings(HEADRACE={"CONCURENCY": 2}):
        (message,) = check_settings()
        assert message.id == "headrace.E001" and "Did you mean 'CONCURRENCY'" in message.msg
    with override_settings(HEADRACE={"DATABASE": "missing"}):
        assert ids(check_settings()) == ["headrace.E002"]
    with override_settings(HEADRACE={"HANDLERS": {"t": "shop.handlers.does_not_exist"}}):
        assert "headrace.E004" in ids(check_settings())


def test_the_check_is_registered_with_django() -> None:
    with override_settings(HEADRACE={"BOGUS": 1}):
        assert "headrace.E001" in ids(checks.run_checks())


def test_an_unsupported_engine_is_an_error() -> None:
    from django.db import connections

    dummy = {"ENGINE": "django.db.backends.dummy"}
    configured = connections.configure_settings({"default": dict(connections.settings["default"]), "other": dummy})
    with override_settings(HEADRACE={"DATABASE": "other"}):
        connections.settings["other"] = configured["other"]
        try:
            assert "headrace.E003" in ids(check_settings())
        finally:
            del connections.settings["other"]


def test_sqlite_without_wal_or_immediate_warns(settings: Any) -> None:
    import django

    from headrace.django.checks import _sqlite_warnings

    warnings = ids(_sqlite_warnings("default", {"OPTIONS": {}}))
    if django.VERSION < (5, 1):
        assert warnings == []  # neither option exists before Django 5.1
        return
    assert warnings == ["headrace.W002", "headrace.W003"]
    good = {"OPTIONS": {"init_command": "PRAGMA journal_mode = WAL;", "transaction_mode": "IMMEDIATE"}}
    assert _sqlite_warnings("default", good) == []


def test_an_outbox_alias_no_model_writes_to_warns() -> None:
    from django.db import connections

    extra = dict(connections.settings["default"])
    with override_settings(HEADRACE={"DATABASE": "other"}):
        connections.settings["other"] = extra
        try:
            assert "headrace.W001" in ids(check_settings())
        finally:
            del connections.settings["other"]


def test_one_sqlite_library_in_the_process() -> None:
    """Python's sqlite3 and the core share one SQLite: a write lock held by Python's connection
    blocks the core's write on the same file until it commits (two copies would not see it)."""
    import os
    import sqlite3
    import tempfile
    import threading

    from headrace import OutboxStore
    from headrace._core import sqlite_library
    from headrace.django.checks import _sqlite_library_warning

    version, bundled = sqlite_library()
    assert version == sqlite3.sqlite_version and not bundled
    assert _sqlite_library_warning("default") == []
    path = os.path.join(tempfile.mkdtemp(), "locks.sqlite3")
    store = OutboxStore.connect(f"sqlite:///{path}")
    python_side = sqlite3.connect(path, isolation_level=None)
    python_side.execute("BEGIN IMMEDIATE")
    python_side.execute(
        "INSERT INTO headrace_outbox (topic, payload, max_attempts, run_at, created_at, updated_at) "
        "VALUES ('py', '{}', 1, 0, 0, 0)"
    )
    done = threading.Event()
    threading.Thread(target=lambda: (store.enqueue("core", {}), done.set()), daemon=True).start()
    assert not done.wait(0.5), "the core wrote while Python's connection held the write lock"
    python_side.execute("COMMIT")
    assert done.wait(10)
    assert store.stats()["pending"] == 2
    python_side.close()
