"""Read-only models over the core's tables (the core's migrations own the schema, so these are
unmanaged). Time columns are integer microseconds on SQLite and timestamps on PostgreSQL;
:class:`CoreTimeField` reads and writes both as datetimes."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Any

from django.conf import settings
from django.db import models
from django.utils import timezone as dj_timezone

__all__ = [
    "AppInfo",
    "Bridge",
    "CoreJSONField",
    "CoreTimeField",
    "Invocation",
    "InvocationHistory",
    "OutboxItem",
    "OutboxStatus",
    "Policy",
    "Worker",
    "WorkflowRun",
]

_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)


class CoreTimeField(models.DateTimeField):  # type: ignore[type-arg]
    """A core time column: integer microseconds since the epoch on SQLite, ``timestamptz`` on
    PostgreSQL. Values read back are aware datetimes (naive in the default time zone when
    ``USE_TZ`` is off)."""

    def get_internal_type(self) -> str:
        # Not "DateTimeField": Django's SQLite backend would parse the integer as ISO text before
        # from_db_value ran. Column types and conversions are this field's own (below).
        return "CoreTimeField"

    def db_type(self, connection: Any) -> str | None:
        return "integer" if connection.vendor == "sqlite" else "timestamp with time zone"

    def from_db_value(self, value: Any, expression: Any, connection: Any) -> datetime | None:
        if value is None:
            return None
        if isinstance(value, int):
            value = _EPOCH + timedelta(microseconds=value)
        if isinstance(value, datetime) and not settings.USE_TZ and dj_timezone.is_aware(value):
            return dj_timezone.make_naive(value)
        return value  # type: ignore[no-any-return]

    def get_db_prep_value(self, value: Any, connection: Any, prepared: bool = False) -> Any:
        if connection.vendor != "sqlite":
            return super().get_db_prep_value(value, connection, prepared)
        if value is None:
            return None
        if not prepared:
            value = self.get_prep_value(value)
        if isinstance(value, datetime):
            if dj_timezone.is_naive(value):
                value = dj_timezone.make_aware(value, dj_timezone.get_default_timezone())
            delta = value - _EPOCH
            return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds
        return value


class CoreJSONField(models.JSONField):
    """A core JSON column: text on SQLite, ``json`` on PostgreSQL (which the driver may hand
    back already decoded)."""

    def from_db_value(self, value: Any, expression: Any, connection: Any) -> Any:
        if value is None or not isinstance(value, (str, bytes, bytearray)):
            return value
        return super().from_db_value(value, expression, connection)


class OutboxStatus(models.TextChoices):
    PENDING = "pending"
    PROCESSING = "processing"
    COMPLETED = "completed"
    FAILED = "failed"


class OutboxItem(models.Model):
    """A row of ``headrace_outbox``. Change items through the core (``headrace.django.enqueue``,
    ``manage.py headrace_outbox``), not through this model."""

    id: models.BigAutoField[int, int] = models.BigAutoField(primary_key=True)
    topic: models.TextField[str, str] = models.TextField()
    payload = models.JSONField()
    status: models.TextField[str, str] = models.TextField(choices=OutboxStatus.choices, default=OutboxStatus.PENDING)
    priority: models.IntegerField[int, int] = models.IntegerField(default=0)
    attempts: models.IntegerField[int, int] = models.IntegerField(default=0)
    max_attempts: models.IntegerField[int, int] = models.IntegerField()
    run_at = CoreTimeField()
    lease_owner: models.TextField[str | None, str | None] = models.TextField(null=True, blank=True)
    lease_expires_at = CoreTimeField(null=True, blank=True)
    last_error: models.TextField[str | None, str | None] = models.TextField(null=True, blank=True)
    dedupe_key: models.TextField[str | None, str | None] = models.TextField(null=True, blank=True)
    trace_id: models.TextField[str | None, str | None] = models.TextField(null=True, blank=True)
    created_at = CoreTimeField()
    updated_at = CoreTimeField()

    class Meta:
        managed = False
        db_table = "headrace_outbox"
        ordering = ("-id",)
        verbose_name = "outbox item"
        default_permissions = ("view",)
        permissions = (
            ("requeue_outboxitem", "Can requeue outbox items"),
            ("run_now_outboxitem", "Can run outbox items now"),
            ("fail_outboxitem", "Can mark outbox items failed"),
            ("purge_outboxitem", "Can purge outbox items"),
        )

    def __str__(self) -> str:
        return f"#{self.pk} {self.topic} ({self.status})"


class Invocation(models.Model):
    """A row of ``headrace_invocations``: a task run recorded on the state backend (a worker's
    dispatch of an outbox item, a policy run, a pynenc-style invocation)."""

    seq: models.BigAutoField[int, int] = models.BigAutoField(primary_key=True)
    invocation_id: models.TextField[str, str] = models.TextField(unique=True)
    task_id: models.TextField[str, str] = models.TextField()
    arguments = CoreJSONField()
    status: models.TextField[str, str] = models.TextField()
    workflow_id: models.TextField[str | None, str | None] = models.TextField(null=True, blank=True)
    workflow_type: models.TextField[str | None, str | None] = models.TextField(null=True, blank=True)
    parent_workflow_id: models.TextField[str | None, str | None] = models.TextField(null=True, blank=True)
    parent_invocation_id: models.TextField[str | None, str | None] = models.TextField(null=True, blank=True)
    result = CoreJSONField(null=True, blank=True)
    exception = CoreJSONField(null=True, blank=True)
    created_at = CoreTimeField()
    updated_at = CoreTimeField()

    class Meta:
        managed = False
        db_table = "headrace_invocations"
        ordering = ("-seq",)
        default_permissions = ("view",)

    def __str__(self) -> str:
        return f"{self.task_id} {self.invocation_id} ({self.status})"


class InvocationHistory(models.Model):
    """A row of ``headrace_invocation_history``: one status change of an invocation."""

    seq: models.BigAutoField[int, int] = models.BigAutoField(primary_key=True)
    invocation_id: models.TextField[str, str] = models.TextField()
    entry_key: models.BigIntegerField[int, int] = models.BigIntegerField()
    timestamp = CoreTimeField()
    utc_offset: models.IntegerField[int, int] = models.IntegerField(default=0)
    status: models.TextField[str | None, str | None] = models.TextField(null=True, blank=True)
    execution_context = CoreJSONField(null=True, blank=True)

    class Meta:
        managed = False
        db_table = "headrace_invocation_history"
        ordering = ("timestamp", "seq")
        default_permissions = ("view",)
        verbose_name_plural = "invocation history"

    def __str__(self) -> str:
        return f"{self.invocation_id} {self.status}"


class WorkflowRun(models.Model):
    """A row of ``headrace_workflow_runs`` (policies register as type ``headrace.policy``)."""

    seq: models.BigAutoField[int, int] = models.BigAutoField(primary_key=True)
    workflow_id: models.TextField[str, str] = models.TextField(unique=True)
    workflow_type: models.TextField[str, str] = models.TextField()
    parent_workflow_id: models.TextField[str | None, str | None] = models.TextField(null=True, blank=True)

    class Meta:
        managed = False
        db_table = "headrace_workflow_runs"
        ordering = ("-seq",)
        default_permissions = ("view",)

    def __str__(self) -> str:
        return f"{self.workflow_type} {self.workflow_id}"


class AppInfo(models.Model):
    """A row of ``headrace_app_infos``; workers keep their heartbeat here."""

    app_id: models.TextField[str, str] = models.TextField(primary_key=True)
    module: models.TextField[str | None, str | None] = models.TextField(null=True, blank=True)
    metadata = CoreJSONField()

    class Meta:
        managed = False
        db_table = "headrace_app_infos"
        ordering = ("app_id",)
        default_permissions = ("view",)
        verbose_name = "app info"

    def __str__(self) -> str:
        return self.app_id


class Worker(AppInfo):
    """A worker, as its heartbeat in the state backend (app ids ``headrace.worker:<id>``)."""

    class Meta:
        proxy = True
        default_permissions = ("view",)
        verbose_name = "worker"


class Policy(models.Model):
    """The admin's entry for durable policies. They live in the runner's policy store on the
    state backend (:mod:`headrace.django.policies`); this model only carries the permissions
    (add, change, delete, view, run now) and is never queried."""

    key: models.TextField[str, str] = models.TextField(primary_key=True)

    class Meta:
        managed = False
        db_table = "headrace_workflow_values"
        verbose_name = "policy"
        verbose_name_plural = "policies"
        permissions = (("run_now_policy", "Can run policies now"),)


class Bridge(OutboxItem):
    """A bridge's schedule: its recurring ``headrace.bridge`` outbox item (``run_at`` is the next
    sync, ``updated_at`` the last run, ``attempts`` the runs so far; see
    ``headrace.integrations.bridges``)."""

    class Meta:
        proxy = True
        default_permissions = ("view",)
        permissions = (("run_now_bridge", "Can run bridges now"),)
        verbose_name = "bridge"
