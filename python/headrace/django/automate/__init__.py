"""Workflows defined in the Django admin: ``INSTALLED_APPS = [..., "headrace.django", "headrace.django.automate"]``.

:class:`~headrace.django.automate.models.WorkflowDefinition` stores a workflow (trigger, JsonLogic
conditions, steps) edited in the admin. Saving validates it with the core's own rules
(:meth:`headrace.workflows.Workflow.from_dict` and the step templates compiled by the Rust
renderer), so the admin refuses what the engine would refuse; a saved change bumps the version.
The admin page of a workflow lists its recent runs as the state backend holds them (inputs and
outputs redacted).

The runtime reads the stored definitions through a workflow source::

    engine = WorkflowEngine(store, state, sources=[workflow_source()])

which the engine consults before matching each event, so an edit or a deactivation in the admin
applies to the next event, and a run keeps the version it started with.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from headrace.workflows import Workflow

__all__ = ["stored_workflows", "workflow_source"]


def stored_workflows(using: str | None = None) -> list[Workflow]:
    """Every workflow stored in the admin (inactive ones with ``active=False``), read from
    ``using`` (default: the database Django's routers choose, as the admin does)."""
    from headrace.django.automate.models import WorkflowDefinition

    rows = WorkflowDefinition.objects.all() if using is None else WorkflowDefinition.objects.using(using)
    return [row.to_workflow() for row in rows.order_by("key")]


def workflow_source(using: str | None = None) -> Callable[[], list[Workflow]]:
    """A workflow source for :class:`headrace.workflows.WorkflowEngine` (``sources=[...]``)."""

    def source() -> list[Workflow]:
        return stored_workflows(using)

    return source
