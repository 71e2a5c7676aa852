"""Health of the headrace installation: database reachable, migrations applied, a worker
heartbeat fresh, the age of the oldest due pending item. Used by ``manage.py
headrace_healthcheck`` (and reusable by a health view)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from typing import Any

from django.db import DatabaseError, connections

__all__ = ["HealthReport", "check_health", "unapplied_migrations"]


@dataclass
class HealthReport:
    database: bool = False
    unapplied_migrations: list[str] = field(default_factory=list)
    missing_core_versions: list[str] = field(default_factory=list)
    workers: dict[str, float] = field(default_factory=dict)  # worker id → heartbeat age (s)
    oldest_pending_age: float | None = None
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "ok": self.ok}


def unapplied_migrations(alias: str) -> list[str]:
    """Every ``headrace`` Django migration not recorded on ``alias``."""
    from django.db.migrations.loader import MigrationLoader

    loader = MigrationLoader(connections[alias], ignore_no_migrations=True)
    return sorted(
        f"{app}.{name}"
        for app, name in loader.disk_migrations
        if app == "headrace" and (app, name) not in loader.applied_migrations
    )


def _missing_core_versions(alias: str) -> list[str]:
    from headrace.django.schema import core_versions

    with connections[alias].cursor() as cursor:
        cursor.execute("SELECT version FROM headrace_schema_migrations")
        applied = {row[0] for row in cursor.fetchall()}
    return [v for v in core_versions(connections[alias].vendor) if v not in applied]


def check_health(
    *,
    alias: str | None = None,
    heartbeat_max_age: float | None = None,
    max_pending_age: float | None = None,
    require_worker: bool = True,
) -> HealthReport:
    from headrace.django import db
    from headrace.django.conf import get_settings

    alias = alias or db.outbox_alias()
    report = HealthReport()
    try:
        with connections[alias].cursor() as cursor:
            cursor.execute("SELECT 1")
            cursor.fetchone()
        report.database = True
    except DatabaseError as exc:
        report.problems.append(f"database {alias!r} unreachable: {exc}")
        return report
    report.unapplied_migrations = unapplied_migrations(alias)
    if report.unapplied_migrations:
        report.problems.append(
            f"unapplied migrations: {', '.join(report.unapplied_migrations)} (run manage.py migrate)"
        )
        return report
    report.missing_core_versions = _missing_core_versions(alias)
    if report.missing_core_versions:
        report.problems.append(
            f"core schema versions not applied: {', '.join(report.missing_core_versions)} "
            "(a headrace Django migration for them is missing: upgrade headrace.django)"
        )
    from headrace.django.models import OutboxItem

    now = datetime.now(timezone.utc)
    oldest = (
        OutboxItem.objects.using(alias)
        .filter(status="pending", run_at__lte=now)
        .order_by("run_at")
        .values_list("run_at", flat=True)
        .first()
    )
    if oldest is not None:
        report.oldest_pending_age = max((now - _aware(oldest)).total_seconds(), 0.0)
        if max_pending_age is not None and report.oldest_pending_age > max_pending_age:
            report.problems.append(
                f"the oldest due pending item waits {report.oldest_pending_age:.1f}s (limit {max_pending_age}s)"
            )
    if require_worker:
        from headrace.django.worker import heartbeats

        limit = heartbeat_max_age if heartbeat_max_age is not None else get_settings().HEARTBEAT_MAX_AGE
        report.workers = {wid: (now - beat).total_seconds() for wid, beat in heartbeats(alias).items()}
        if not any(age <= limit for age in report.workers.values()):
            report.problems.append(f"no worker heartbeat in the last {limit}s")
    return report


def _aware(moment: datetime) -> datetime:
    return moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)
