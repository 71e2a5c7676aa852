"""The workflow signals as Django signals (``from headrace.django.workflow_signals import ...``).

Each fires once per occurrence, with ``sender`` = the engine's class and the arguments of
:mod:`headrace.signals` (``execution``; ``step`` and ``error`` where they apply). Receivers that
raise are logged by Django's ``send_robust`` and never break the run. The forwarding is on
whenever the ``headrace.django`` app is installed and Django is set up.
"""

from __future__ import annotations

from django.dispatch import Signal

__all__ = [
    "event_received",
    "step_completed",
    "step_failed",
    "step_started",
    "workflow_completed",
    "workflow_failed",
    "workflow_started",
]

event_received = Signal()
workflow_started = Signal()
workflow_completed = Signal()
workflow_failed = Signal()
step_started = Signal()
step_completed = Signal()
step_failed = Signal()
