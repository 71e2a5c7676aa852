"""A legacy orb-worker backend: only ``setup()``, a zero-argument ``__init__``, and state set in
``setup()`` that ``run()`` relies on (the scheduled instance must be the one set up)."""

from collections.abc import Iterable
from typing import ClassVar

from netboxlabs.diode.sdk.ingester import Device, Entity
from worker.backend import Backend
from worker.models import Metadata, Policy


class LegacyBackend(Backend):
    instances: ClassVar[list["LegacyBackend"]] = []

    def __init__(self) -> None:
        self.app_started = False
        LegacyBackend.instances.append(self)

    def setup(self) -> Metadata:
        self.app_started = True
        return Metadata(name="legacy_custom", app_name="legacy_app", app_version="0.1.0")

    def run(self, policy_name: str, policy: Policy) -> Iterable[Entity]:
        if not self.app_started:
            raise RuntimeError("run() reached before setup() initialised this instance")
        return [
            Entity(
                device=Device(
                    name=f"legacy-device-{policy_name}",
                    device_type="Legacy Device Type",
                    platform="Legacy Platform",
                    manufacturer="Legacy Manufacturer",
                    site="Site Legacy",
                    role="Role Legacy",
                    status="active",
                )
            )
        ]
