"""A policy-runner backend yielding a few fixed devices."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from headrace import Backend, Metadata


class ExampleInventory(Backend):
    @classmethod
    def describe(cls) -> Metadata:
        return Metadata(name="example_inventory", app_name="example-inventory", app_version="0.1.0")

    def run(self, policy_name: str, policy: Any, **kwargs: Any) -> Iterable[dict[str, Any]]:
        for n in range(3):
            yield {"name": f"device-{n}", "site": {"name": "lab"}}
