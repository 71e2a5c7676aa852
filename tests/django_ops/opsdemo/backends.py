"""A policy backend for the ops tests: yields ``scope["count"]`` entities naming the policy."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from headrace.backend import Backend
from headrace.orb.models import Metadata


class CountingBackend(Backend):
    @classmethod
    def describe(cls) -> Metadata:
        return Metadata(name="counting", app_name="opsdemo", app_version="1.0")

    def run(self, policy_name: str, policy: Any, **kwargs: Any) -> Iterable[Any]:
        scope = policy.scope or {}
        for n in range(int(scope.get("count", 1))):
            yield {"policy": policy_name, "n": n, "label": scope.get("label", "")}
