"""Integration implementation descriptors (angee's ``integrate.impl`` contract).

* :class:`IntegrationImpl` binds behaviour to an owning integration record; subclasses are
  found by string key in a :class:`Registry` filled from dotted paths (a Django-style setting)
  and from the entry-point group ``headrace.integrations``.
* :class:`Client` calls out; :class:`QueuedClient` does so asynchronously through the outbox:
  ``client.enqueue(payload)`` puts an item on the client's topic and ``OutboxWorker`` dispatches
  it to ``run(payload)`` with the client's own ``max_retries`` / ``retry_backoff_base_seconds``.
* :class:`BridgeImpl` pulls data in on a schedule; :func:`run_due_bridges` runs each bridge whose
  ``next_sync_at`` has passed exactly once, even across processes, and advances it.
"""

from __future__ import annotations

from headrace.integrations.bridges import (
    BridgeImpl,
    BridgeRun,
    BridgeState,
    bridge_state,
    run_due_bridges,
)
from headrace.integrations.descriptors import Client, IntegrationImpl, NullIntegrationImpl
from headrace.integrations.oauth import OAuthClientRegistry, oauth_clients
from headrace.integrations.queued import QueuedClient
from headrace.integrations.registry import ENTRY_POINT_GROUP, Registry, import_dotted, registry
from headrace.integrations.stores import default_store
from headrace.worker import BRIDGE_TOPIC

__all__ = [
    "BRIDGE_TOPIC",
    "ENTRY_POINT_GROUP",
    "BridgeImpl",
    "BridgeRun",
    "BridgeState",
    "Client",
    "IntegrationImpl",
    "NullIntegrationImpl",
    "OAuthClientRegistry",
    "QueuedClient",
    "Registry",
    "bridge_state",
    "default_store",
    "import_dotted",
    "oauth_clients",
    "registry",
    "run_due_bridges",
]
