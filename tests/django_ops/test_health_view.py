"""``/headrace/health/``: 200 when healthy, 503 with the problems otherwise, JSON either way."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
from django.test import Client, override_settings

from headrace.django import enqueue

URL = "/headrace/health/"


def _beat(worker: str, age_seconds: float) -> None:
    from headrace.django import db
    from headrace.django.worker import HEARTBEAT_PREFIX
    from headrace.state import AppInfo

    state = db.open_state()
    try:
        moment = datetime.now(timezone.utc) - timedelta(seconds=age_seconds)
        state.store_app_info(
            AppInfo(
                app_id=HEARTBEAT_PREFIX + worker, module="headrace.django", metadata={"heartbeat": moment.isoformat()}
            )
        )
        state.wait_for_all_async_operations()
    finally:
        state.close()


def test_no_worker_heartbeat_is_503(committed: Any) -> None:
    response = Client().get(URL)
    assert response.status_code == 503
    assert response["Content-Type"] == "application/json"
    body = response.json()
    assert body["ok"] is False and body["database"] is True
    assert body["unapplied_migrations"] == []
    assert any("no worker heartbeat" in p for p in body["problems"]), body


def test_fresh_heartbeat_is_200(committed: Any) -> None:
    _beat("w-fresh", 1)
    response = Client().get(URL)
    assert response.status_code == 200, response.json()
    body = response.json()
    assert body["ok"] is True and body["problems"] == []
    assert 0 <= body["workers"]["w-fresh"] < 30
    assert "no-cache" in response["Cache-Control"] or "max-age=0" in response["Cache-Control"]


def test_stale_heartbeat_is_503(committed: Any) -> None:
    _beat("w-stale", 120)  # HEARTBEAT_MAX_AGE is 30 in the test settings
    response = Client().get(URL)
    assert response.status_code == 503
    assert response.json()["workers"]["w-stale"] >= 120


def test_oldest_pending_age_against_the_threshold(committed: Any, settings: Any) -> None:
    _beat("w-1", 1)
    enqueue("late.t", {"n": 1}, run_at=datetime.now(timezone.utc) - timedelta(minutes=10))
    assert Client().get(URL).status_code == 200  # no limit configured
    with override_settings(HEADRACE={**settings.HEADRACE, "MAX_PENDING_AGE": 60}):
        response = Client().get(URL)
    assert response.status_code == 503
    body = response.json()
    assert body["oldest_pending_age"] >= 600
    assert any("oldest due pending item" in p for p in body["problems"]), body


def test_worker_requirement_can_be_switched_off(committed: Any, settings: Any) -> None:
    with override_settings(HEADRACE={**settings.HEADRACE, "HEALTH_REQUIRE_WORKER": False}):
        assert Client().get(URL).status_code == 200


def test_unreachable_database_is_503(committed: Any, settings: Any) -> None:
    from django.db import connections

    real = connections["default"].settings_dict.copy()
    broken = {**real}
    if real["ENGINE"].endswith("sqlite3"):
        broken["NAME"] = "/nonexistent-dir/headrace.sqlite3"
    else:
        broken["PORT"] = "1"
    connections["default"].close()
    connections["default"].settings_dict.update(broken)
    try:
        response = Client().get(URL)
    finally:
        connections["default"].close()
        connections["default"].settings_dict.update(real)
    assert response.status_code == 503
    body = response.json()
    assert body["ok"] is False
    assert body.get("database") is False or "failed" in " ".join(body["problems"])


@pytest.mark.django_db
def test_only_get_and_head() -> None:
    assert Client().post(URL).status_code == 405
    assert Client().head(URL).status_code in (200, 503)


@pytest.mark.django_db
def test_an_unapplied_migration_is_503() -> None:
    from django.db.migrations.recorder import MigrationRecorder

    MigrationRecorder.Migration.objects.filter(app="headrace", name="0006_operations_models").delete()
    response = Client().get(URL)
    assert response.status_code == 503
    body = response.json()
    assert body["unapplied_migrations"] == ["headrace.0006_operations_models"]
    assert any("manage.py migrate" in p for p in body["problems"])
