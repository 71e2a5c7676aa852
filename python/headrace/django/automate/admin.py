"""The admin of workflow definitions, with each workflow's recent runs on its page.

Runs are read from the state backend on the outbox's database as stored: step inputs, outputs
and errors were redacted before they were written, and are passed through the core's redaction
again before they are shown (sensitive keys, and any secret this process resolved).
"""

from __future__ import annotations

import json
from typing import Any

from django.contrib import admin
from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString

from headrace._core import redact_value
from headrace.django.automate.models import WorkflowDefinition
from headrace.workflows.records import Execution, load_executions
from headrace.workflows.redaction import known_secrets

__all__ = ["WorkflowDefinitionAdmin"]

#: How many runs a workflow's page lists (the newest).
RECENT_RUNS = 20


def _shown(value: Any) -> str:
    if value is None:
        return ""
    return json.dumps(redact_value(value, sorted(known_secrets())), sort_keys=True, default=str)


def _runs(workflow_key: str) -> list[Execution]:
    from headrace.django import db
    from headrace.django.results import state_for

    return load_executions(state_for(db.outbox_alias()), workflow_key, limit=RECENT_RUNS)


def _run_rows(run: Execution) -> SafeString:
    steps = format_html_join(
        "",
        "<tr><td></td><td>{}</td><td>{}</td><td>{}</td><td><code>{}</code></td><td><code>{}</code></td>"
        "<td><code>{}</code></td></tr>",
        (
            (step.id, step.status, step.attempts, _shown(step.input), _shown(step.output), _shown(step.error))
            for step in run.steps.values()
        ),
    )
    return format_html(
        '<tr class="headrace-run"><td>{}</td><td>v{}</td><td>{}</td>'
        '<td colspan="4">event {} <code>{}</code></td></tr>{}',
        run.id,
        run.version,
        run.status,
        run.event.get("id", ""),
        _shown(run.error),
        steps,
    )


@admin.register(WorkflowDefinition)
class WorkflowDefinitionAdmin(admin.ModelAdmin):  # type: ignore[type-arg]
    list_display = ("key", "name", "version", "active", "trigger", "updated_at")
    list_filter = ("active",)
    search_fields = ("key", "name")
    fieldsets = (
        (None, {"fields": ("key", "name", "active", "version")}),
        ("Trigger", {"fields": ("trigger_source", "trigger_event_type", "conditions")}),
        ("Steps", {"fields": ("steps",)}),
        ("Recent runs", {"fields": ("recent_runs",)}),
    )

    def get_readonly_fields(self, request: Any, obj: WorkflowDefinition | None = None) -> tuple[str, ...]:
        fixed = ("version", "recent_runs")
        return ("key", *fixed) if obj is not None else fixed

    @admin.display(description="trigger")
    def trigger(self, obj: WorkflowDefinition) -> str:
        return f"{obj.trigger_source} / {obj.trigger_event_type}"

    @admin.display(description="recent runs")
    def recent_runs(self, obj: WorkflowDefinition) -> SafeString:
        if obj.pk is None:
            return format_html("{}", "none yet")
        runs = _runs(obj.key)
        if not runs:
            return format_html("{}", "none yet")
        body = format_html_join("", "{}", ((_run_rows(run),) for run in reversed(runs)))
        return format_html(
            '<table class="headrace-runs"><thead><tr><th>run</th><th>step / version</th><th>status</th>'
            "<th>attempts</th><th>input</th><th>output</th><th>error</th></tr></thead><tbody>{}</tbody></table>",
            body,
        )
