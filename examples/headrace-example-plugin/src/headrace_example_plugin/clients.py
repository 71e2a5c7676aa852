"""A queued client that stores what it was given."""

from __future__ import annotations

from typing import Any, ClassVar

from headrace.integrations import QueuedClient


class ExampleQueuedClient(QueuedClient):
    key = "example_queued"
    topic = "example.queued"
    received: ClassVar[list[Any]] = []

    def run(self, payload: Any) -> Any:
        type(self).received.append(payload)
        return {"ok": True}
