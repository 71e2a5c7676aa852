"""Workflows: triggers, JsonLogic conditions and templated steps run through the outbox.

See :mod:`headrace.workflows.engine` for how runs execute, retry and recover.
"""

from headrace.workflows.definition import Step, Trigger, Workflow, load_workflows
from headrace.workflows.engine import EVENT_TOPIC, RUN_TOPIC, StepRetry, WorkflowEngine
from headrace.workflows.records import Execution, StepRun, run_id_for
from headrace.workflows.redaction import RedactingFilter, install_log_redaction
from headrace.workflows.templates import FilterRegistry, default_filters, register_filter, render_input

__all__ = [
    "EVENT_TOPIC",
    "RUN_TOPIC",
    "Execution",
    "FilterRegistry",
    "RedactingFilter",
    "Step",
    "StepRetry",
    "StepRun",
    "Trigger",
    "Workflow",
    "WorkflowEngine",
    "default_filters",
    "install_log_redaction",
    "load_workflows",
    "register_filter",
    "render_input",
    "run_id_for",
]
