"""The process-wide default outbox store of the integrations."""

from __future__ import annotations

import os
import threading

from headrace.errors import ConfigError
from headrace.outbox import OutboxStore

_default_stores: dict[str, OutboxStore] = {}
_default_lock = threading.Lock()


def default_store() -> OutboxStore:
    """The process-wide store for ``$HEADRACE_DATABASE_URL`` (opened once)."""
    url = os.environ.get("HEADRACE_DATABASE_URL")
    if not url:
        raise ConfigError("no outbox store: pass store=..., set QueuedClient.store, or set HEADRACE_DATABASE_URL")
    with _default_lock:
        if url not in _default_stores:
            _default_stores[url] = OutboxStore.connect(url)
        return _default_stores[url]
