"""Operating the outbox from Django: the operational states of items, the queue summary shown
in the admin header, and the operator actions (requeue, run now, mark failed, purge).

Reads go through the read-only ORM models. Every change is a statement the Rust core renders
(``ExternalOutboxSql.requeue_items`` and friends) and Django's connection executes inside the
caller's transaction, so an action commits or rolls back with the request; the ORM never
writes a core table.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any

from django.db import connections, transaction
from django.db.models import Count, Min, Q, QuerySet

from headrace.django import db

__all__ = [
    "HELD_RUN_AT",
    "OPERATIONAL_STATES",
    "ActionResult",
    "QueueSummary",
    "fail_items",
    "purge_items",
    "queue_summary",
    "requeue_items",
    "run_items_now",
    "state_filter",
    "state_of",
]

#: ``run_at`` of chunks a running policy run holds back until it completes (the core's rule).
HELD_RUN_AT = datetime(9000, 1, 1, tzinfo=timezone.utc)

#: Operational state → label, in the order the admin lists them. Every item is in exactly one.
OPERATIONAL_STATES: dict[str, str] = {
    "ready": "Ready (due now)",
    "scheduled": "Scheduled (due later)",
    "retrying": "Retrying (waiting out a backoff)",
    "held": "Held (chunk of a running run)",
    "in_flight": "In flight (leased)",
    "stalled": "Stalled (lease expired)",
    "dead": "Dead (failed)",
    "completed": "Completed",
}


def state_filter(state: str, now: datetime) -> Q:
    """The ``Q`` selecting items in operational ``state`` at ``now``."""
    pending = Q(status="pending")
    if state == "ready":
        return pending & Q(run_at__lte=now)
    if state == "scheduled":
        return pending & Q(run_at__gt=now, run_at__lt=HELD_RUN_AT, attempts=0)
    if state == "retrying":
        return pending & Q(run_at__gt=now, run_at__lt=HELD_RUN_AT, attempts__gt=0)
    if state == "held":
        return pending & Q(run_at__gte=HELD_RUN_AT)
    if state == "in_flight":
        return Q(status="processing", lease_expires_at__gt=now)
    if state == "stalled":
        return Q(status="processing") & (Q(lease_expires_at__lte=now) | Q(lease_expires_at__isnull=True))
    if state == "dead":
        return Q(status="failed")
    if state == "completed":
        return Q(status="completed")
    raise ValueError(f"unknown operational state {state!r} (known: {', '.join(OPERATIONAL_STATES)})")


def state_of(item: Any, now: datetime) -> str:
    """The operational state of one item (an ORM ``OutboxItem`` or the core's)."""
    status = str(item.status)
    run_at = _aware(item.run_at)
    if status == "pending":
        if run_at >= HELD_RUN_AT:
            return "held"
        if run_at <= now:
            return "ready"
        return "retrying" if item.attempts > 0 else "scheduled"
    if status == "processing":
        expires = item.lease_expires_at
        return "in_flight" if expires is not None and _aware(expires) > now else "stalled"
    return "dead" if status == "failed" else "completed"


def _aware(moment: datetime) -> datetime:
    return moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)


@dataclass
class QueueSummary:
    """The admin header: depth per status, the oldest due pending item's age, the dead count."""

    depth: dict[str, int] = field(default_factory=dict)
    oldest_pending_age: float | None = None
    now: datetime = field(default_factory=lambda: datetime.now(timezone.utc))

    @property
    def dead(self) -> int:
        return self.depth.get("failed", 0)

    @property
    def total(self) -> int:
        return sum(self.depth.values())

    def as_dict(self) -> dict[str, Any]:
        return {"depth": dict(self.depth), "oldest_pending_age": self.oldest_pending_age, "dead": self.dead}


def queue_summary(queryset: QuerySet[Any] | None = None, *, now: datetime | None = None) -> QueueSummary:
    """Two aggregate queries, whatever the table's size: the depth per status and the oldest due
    pending ``run_at``."""
    from headrace.django.models import OutboxItem, OutboxStatus

    now = now or datetime.now(timezone.utc)
    items = queryset if queryset is not None else OutboxItem.objects.using(db.outbox_alias()).all()
    depth = {status.value: 0 for status in OutboxStatus}
    for row in items.order_by().values("status").annotate(n=Count("id")):
        depth[row["status"]] = row["n"]
    oldest = items.order_by().filter(status="pending", run_at__lte=now).aggregate(oldest=Min("run_at"))["oldest"]
    age = max((now - _aware(oldest)).total_seconds(), 0.0) if oldest is not None else None
    return QueueSummary(depth=depth, oldest_pending_age=age, now=now)


@dataclass
class ActionResult:
    """Which of the chosen items an action changed; the rest were not in a state it applies to."""

    changed: list[int]
    skipped: list[int]


def _run(ids: Sequence[int], render: Any, using: str | None) -> ActionResult:
    alias = using or db.outbox_alias()
    chosen = sorted({int(i) for i in ids})
    if not chosen:
        return ActionResult([], [])
    with transaction.atomic(using=alias), connections[alias].cursor() as cursor:
        cursor.execute(*render(db.external_sql(alias), chosen))
        changed = sorted(int(row[0]) for row in cursor.fetchall())
    done = set(changed)
    return ActionResult(changed, [i for i in chosen if i not in done])


def requeue_items(ids: Sequence[int], *, using: str | None = None) -> ActionResult:
    """Back to pending, due now, attempts reset. Skipped: items a worker holds a live lease on,
    held chunks, and items whose dedupe key a live item holds."""
    return _run(ids, lambda sql, chosen: sql.requeue_items(chosen), using)


def run_items_now(ids: Sequence[int], *, using: str | None = None) -> ActionResult:
    """Pending items due later (scheduled or retrying) become due now; attempts are kept."""
    return _run(ids, lambda sql, chosen: sql.run_items_now(chosen), using)


def fail_items(ids: Sequence[int], error: str, *, using: str | None = None) -> ActionResult:
    """Pending and processing items go to the dead letter with ``error``."""
    return _run(ids, lambda sql, chosen: sql.fail_items(chosen, error), using)


def purge_items(ids: Sequence[int], *, using: str | None = None) -> ActionResult:
    """Deletes completed and failed items; live work is never deleted."""
    return _run(ids, lambda sql, chosen: sql.purge_items(chosen), using)


def age_text(seconds: float | None) -> str:
    """``"3m 20s"``-style text for an age in seconds (``"—"`` for none)."""
    if seconds is None:
        return "—"
    delta = timedelta(seconds=round(seconds))
    days, rest = delta.days, delta.seconds
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    parts = [(days, "d"), (hours, "h"), (minutes, "m"), (secs, "s")]
    shown = [f"{n}{unit}" for n, unit in parts if n][:2]
    return " ".join(shown) or "0s"
