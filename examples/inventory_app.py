"""The README's main job: a bridge pulls this machine's inventory into the outbox, the worker
consumes it.

* ``HostInventoryBridge`` wraps the policy-runner backend ``host_inventory.HostInventory``: when
  due (every 5 minutes) it runs it through the runner — run_id, exact-size chunks — into the
  outbox topic ``headrace.entities``.
* ``record_inventory`` handles those chunks: it tallies the entities by kind and keeps the latest
  inventory of each run in ``inventory/<run_id>.json`` beside the database.

Run it with ``headrace worker --app examples/inventory_app.py`` (``--once`` to pull, drain and
exit), as ``./scripts/run`` does.
"""

from __future__ import annotations

import json
import logging
import os
from collections import Counter
from pathlib import Path
from typing import Any

from host_inventory import HostInventory

from headrace.integrations import BridgeImpl
from headrace.outbox import OutboxItem

log = logging.getLogger("headrace.examples.inventory")

OUTPUT = Path(os.environ.get("HEADRACE_INVENTORY_DIR", "inventory"))


class HostInventoryBridge(BridgeImpl):
    """Pulls this host's interfaces, addresses and mounts every five minutes."""

    key = "host-inventory"
    interval_seconds = 300
    backend = HostInventory
    backend_config = {"include_virtual_filesystems": False}  # noqa: RUF012
    backend_scope = {"site": os.environ.get("HEADRACE_SITE", "headrace-lab"), "role": "server"}  # noqa: RUF012


def record_inventory(item: OutboxItem) -> dict[str, int]:
    """Tallies one chunk's entities by kind and appends them to its run's inventory file."""
    chunk = item.payload
    metadata = chunk["metadata"]
    kinds = Counter(next(iter(entity)) for entity in chunk["entities"] if isinstance(entity, dict) and entity)
    OUTPUT.mkdir(parents=True, exist_ok=True)
    path = OUTPUT / f"{metadata['run_id']}.json"
    existing: list[Any] = json.loads(path.read_text()) if path.exists() else []
    path.write_text(json.dumps(existing + chunk["entities"], indent=1))
    summary = ", ".join(f"{count} {kind}" for kind, count in sorted(kinds.items()))
    log.info(
        "run %s chunk %s from %s: %s", metadata["run_id"], metadata["chunk_index"], metadata["policy_name"], summary
    )
    return dict(kinds)


HANDLERS = {"headrace.entities": record_inventory}
BRIDGES = [HostInventoryBridge()]
