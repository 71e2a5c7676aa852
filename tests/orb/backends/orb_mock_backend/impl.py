"""A minimal orb-worker mock backend: ``setup()`` metadata and a ``run(self, _: Config, __: Any)``
that ignores its arguments."""

from collections.abc import Iterable
from typing import Any

from netboxlabs.diode.sdk.ingester import Device, Entity
from worker.backend import Backend
from worker.models import Config, Metadata


class MockBackend(Backend):
    def setup(self) -> Metadata:
        return Metadata(name="mock_custom", app_name="mock_app", app_version="1.0.0")

    def run(self, _: Config, __: Any) -> Iterable[Entity]:
        return [
            Entity(
                device=Device(
                    name="Device A",
                    device_type="Device Type A",
                    platform="Platform A",
                    manufacturer="Manufacturer A",
                    site="Site ABC",
                    role="Role ABC",
                    serial="123456",
                    asset_tag="123456",
                    status="active",
                    tags=["tag 1", "tag 2"],
                )
            )
        ]
