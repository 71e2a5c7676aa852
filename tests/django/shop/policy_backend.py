"""A policy backend the worker command runs (HEADRACE["POLICIES"]): one entity per count."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from headrace import Backend, Metadata


class OrderExport(Backend):
    @classmethod
    def describe(cls) -> Metadata:
        return Metadata(name="order-export", app_name="shop", app_version="1.0")

    def run(self, policy_name: str, policy: Any, **kwargs: Any) -> Iterator[dict[str, Any]]:
        for i in range(int(policy.config.count)):
            yield {"name": f"{policy.scope['prefix']}-{i}"}
