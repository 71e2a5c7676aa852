"""headrace's own admin (``headrace.django.admin``, found by ``admin.autodiscover``): the outbox,
the durable policies with their runs, bridges, workers, invocations and workflow runs.

Every page reads through read-only, unmanaged models; every change (requeue, run now, mark
failed, purge, policy edits) goes through the core, never an ORM write. Built on the seed's base
classes in :mod:`headrace.django.admin_base`.
"""

from headrace.django.admin.bridges import BridgeAdmin
from headrace.django.admin.outbox import OutboxItemAdmin
from headrace.django.admin.policies import PolicyAdmin
from headrace.django.admin.state import InvocationAdmin, WorkerAdmin, WorkflowRunAdmin

__all__ = ["BridgeAdmin", "InvocationAdmin", "OutboxItemAdmin", "PolicyAdmin", "WorkerAdmin", "WorkflowRunAdmin"]
