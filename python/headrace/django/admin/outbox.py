"""The outbox admin: operational filters, a queue-health header, pretty payloads, each item's
attempts from the state backend, and permission-gated actions that go through the core."""

from __future__ import annotations

import logging
from datetime import datetime, timezone
from typing import Any

from django.contrib import admin, messages
from django.db.models import QuerySet, TextField
from django.db.models.functions import Cast, Substr
from django.http import HttpRequest, HttpResponse
from django.utils.html import format_html, format_html_join

from headrace.django import operations
from headrace.django.admin.audit import CHANGE, DELETION, log_admin_change
from headrace.django.admin_base import BaseModelAdmin, PermissionMixin, SearchMixin, pretty_json, truncate
from headrace.django.models import Invocation, InvocationHistory, OutboxItem

__all__ = ["OperationalStateFilter", "OutboxItemAdmin", "attempt_invocations"]

log = logging.getLogger("headrace.django.admin")

#: Characters of a payload shown in the list (read from the database already cut).
PAYLOAD_PREVIEW_CHARS = 120
#: Characters of a pretty-printed payload shown on an item's page.
PAYLOAD_DETAIL_CHARS = 20_000

_STATE_COLOURS = {
    "ready": "#2e7d32",
    "scheduled": "#1565c0",
    "retrying": "#ef6c00",
    "held": "#6a1b9a",
    "in_flight": "#00838f",
    "stalled": "#ad1457",
    "dead": "#c62828",
    "completed": "#616161",
}


class OperationalStateFilter(admin.SimpleListFilter):
    """Ready, scheduled, retrying, held, in flight, stalled, dead, completed (at request time)."""

    title = "operational state"
    parameter_name = "state"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return list(operations.OPERATIONAL_STATES.items())

    def queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any]:
        value = self.value()
        if not value or value not in operations.OPERATIONAL_STATES:
            return queryset
        return queryset.filter(operations.state_filter(value, datetime.now(timezone.utc)))


def attempt_invocations(item_id: int, *, using: str) -> list[tuple[Any, list[Any]]]:
    """The worker's recorded dispatches of one item (``outbox-item-<id>-attempt-…`` invocations
    on the state backend), oldest first, each with its status history: two queries."""
    prefix = f"outbox-item-{item_id}-attempt-"
    invocations = list(
        Invocation.objects.using(using).filter(invocation_id__startswith=prefix).order_by("created_at", "seq")
    )
    history: dict[str, list[Any]] = {inv.invocation_id: [] for inv in invocations}
    if invocations:
        rows = InvocationHistory.objects.using(using).filter(invocation_id__in=list(history)).order_by("timestamp")
        for row in rows:
            history[row.invocation_id].append(row)
    return [(inv, history[inv.invocation_id]) for inv in invocations]


@admin.register(OutboxItem)
class OutboxItemAdmin(PermissionMixin, SearchMixin, BaseModelAdmin):
    """Read-only outbox items; the actions each need their own permission
    (``headrace.requeue_outboxitem``, ``run_now_…``, ``fail_…``, ``purge_…``)."""

    list_display = [
        "id",
        "topic",
        "state",
        "status",
        "attempts_display",
        "priority",
        "run_at",
        "payload_preview",
        "lease_owner",
        "updated_at",
    ]
    list_display_links = ["id"]
    list_filter = [OperationalStateFilter, "status", "topic"]
    search_fields = ["=topic", "=dedupe_key", "=trace_id"]
    search_lookups = {"id": "pk", "topic": "topic", "dedupe": "dedupe_key", "trace": "trace_id"}
    search_help_text = "An id, a topic, a dedupe key or a trace id (or id:…, topic:…, dedupe:…, trace:…)."
    custom_permissions = ("requeue", "run_now", "fail", "purge")
    actions = ["requeue", "run_now", "mark_failed", "purge"]
    change_list_template = "admin/headrace/outboxitem/change_list.html"
    fields = [
        "id",
        "topic",
        "state",
        "status",
        "priority",
        "attempts",
        "max_attempts",
        "run_at",
        "lease_owner",
        "lease_expires_at",
        "last_error_text",
        "dedupe_key",
        "trace_id",
        "payload_pretty",
        "attempt_history",
        "created_at",
        "updated_at",
    ]

    # -- read only -----------------------------------------------------------------------------

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> list[str]:
        return [str(name) for name in self.fields or []]

    def get_queryset(self, request: HttpRequest) -> QuerySet[Any]:
        # The list reads only the first characters of each payload: megabyte payloads stay in
        # the database (an item's own page reads the whole payload).
        queryset = super().get_queryset(request)
        return queryset.defer("payload").annotate(
            payload_head=Substr(Cast("payload", output_field=TextField()), 1, PAYLOAD_PREVIEW_CHARS + 1)
        )

    # -- columns -------------------------------------------------------------------------------

    def _now(self) -> datetime:
        return datetime.now(timezone.utc)

    @admin.display(description="state")
    def state(self, obj: OutboxItem) -> str:
        state = operations.state_of(obj, self._now())
        label = operations.OPERATIONAL_STATES[state].split(" (")[0]
        return format_html(
            '<span class="headrace-state headrace-state-{}" style="color:{};font-weight:bold">{}</span>',
            state,
            _STATE_COLOURS[state],
            label,
        )

    @admin.display(description="attempts", ordering="attempts")
    def attempts_display(self, obj: OutboxItem) -> str:
        return f"{obj.attempts}/{obj.max_attempts}"

    @admin.display(description="payload")
    def payload_preview(self, obj: OutboxItem) -> str:
        head = str(getattr(obj, "payload_head", "") or "")
        return format_html("<code>{}</code>", truncate(head, PAYLOAD_PREVIEW_CHARS))

    @admin.display(description="payload")
    def payload_pretty(self, obj: OutboxItem) -> str:
        return pretty_json(obj.payload, limit=PAYLOAD_DETAIL_CHARS)

    @admin.display(description="last error")
    def last_error_text(self, obj: OutboxItem) -> str:
        if not obj.last_error:
            return "—"
        return format_html("<pre>{}</pre>", truncate(obj.last_error, 4000))

    @admin.display(description="attempts (state backend)")
    def attempt_history(self, obj: OutboxItem) -> str:
        attempts = attempt_invocations(obj.pk, using=obj._state.db or "default")
        if not attempts:
            return "No dispatch recorded (the worker records them when HEADRACE['STATE'] is on)."
        rows = []
        for invocation, history in attempts:
            attempt = (invocation.arguments or {}).get("attempt", "?")
            steps = ", ".join(
                f"{h.status} {h.timestamp:%Y-%m-%d %H:%M:%S}"
                + (f" ({(h.execution_context or {}).get('worker_id')})" if h.execution_context else "")
                for h in history
            )
            error = invocation.exception or ""
            if isinstance(error, dict):
                error = error.get("message") or error.get("error") or str(error)
            rows.append((attempt, invocation.status, steps or "—", truncate(str(error), 300) if error else ""))
        body = format_html_join("", "<tr><td>{}</td><td>{}</td><td>{}</td><td><code>{}</code></td></tr>", rows)
        return format_html(
            '<table class="headrace-attempts"><thead><tr><th>attempt</th><th>status</th>'
            "<th>history</th><th>error</th></tr></thead><tbody>{}</tbody></table>",
            body,
        )

    # -- header --------------------------------------------------------------------------------

    def changelist_view(self, request: HttpRequest, extra_context: dict[str, Any] | None = None) -> HttpResponse:
        summary = operations.queue_summary(OutboxItem.objects.using(self._db()).all())
        context = {
            **(extra_context or {}),
            "headrace_summary": summary,
            "headrace_oldest_pending": operations.age_text(summary.oldest_pending_age),
        }
        return super().changelist_view(request, extra_context=context)

    def _db(self) -> str:
        from headrace.django import db

        return db.outbox_alias()

    # -- actions (each through the core, each behind its own permission) ------------------------

    def _report(
        self, request: HttpRequest, verb: str, result: operations.ActionResult, why: str, flag: int = CHANGE
    ) -> None:
        log.info("%s %s outbox items %s (skipped %s)", request.user, verb, result.changed, result.skipped)
        log_admin_change(request, OutboxItem, result.changed, f"{verb.capitalize()} from the admin.", flag)
        if result.changed:
            self.message_user(request, f"{verb.capitalize()} {len(result.changed)} item(s).", messages.SUCCESS)
        if result.skipped:
            ids = ", ".join(f"#{i}" for i in result.skipped[:20]) + ("…" if len(result.skipped) > 20 else "")
            self.message_user(request, f"Left {len(result.skipped)} item(s) alone ({why}): {ids}.", messages.WARNING)

    @staticmethod
    def _ids(queryset: QuerySet[Any]) -> list[int]:
        return [int(pk) for pk in queryset.values_list("pk", flat=True)]

    @admin.action(description="Requeue selected items (pending now, attempts reset)", permissions=["requeue"])
    def requeue(self, request: HttpRequest, queryset: QuerySet[Any]) -> None:
        result = operations.requeue_items(self._ids(queryset), using=self._db())
        self._report(request, "requeued", result, "in flight, held, or their dedupe key is taken by a live item")

    @admin.action(description="Run selected items now", permissions=["run_now"])
    def run_now(self, request: HttpRequest, queryset: QuerySet[Any]) -> None:
        result = operations.run_items_now(self._ids(queryset), using=self._db())
        self._report(request, "made due now", result, "not pending and due later")

    @admin.action(description="Mark selected items failed (dead letter)", permissions=["fail"])
    def mark_failed(self, request: HttpRequest, queryset: QuerySet[Any]) -> None:
        error = f"marked failed in the admin by {request.user.get_username()}"
        result = operations.fail_items(self._ids(queryset), error, using=self._db())
        self._report(request, "marked failed", result, "already completed or failed, or held")

    @admin.action(description="Purge selected completed or failed items", permissions=["purge"])
    def purge(self, request: HttpRequest, queryset: QuerySet[Any]) -> None:
        result = operations.purge_items(self._ids(queryset), using=self._db())
        self._report(request, "purged", result, "still pending or processing", DELETION)
