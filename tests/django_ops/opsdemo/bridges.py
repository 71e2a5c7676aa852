"""A bridge for the ops tests: counts its syncs."""

from __future__ import annotations

from typing import ClassVar

from headrace.integrations import BridgeImpl


class CountingBridge(BridgeImpl):
    key = "opsdemo-counting"
    interval_seconds = 3600
    synced: ClassVar[list[int]] = []

    def sync(self) -> int:
        self.synced.append(1)
        return len(self.synced)
