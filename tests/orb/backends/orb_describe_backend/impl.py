"""A backend written for orb-worker's current contract (``describe()``), in the shape of
orb-worker's nbl-custom test backend: it imports only ``worker.*`` and the diode SDK.

``config.devices`` (default 1) sets how many Device entities ``run()`` returns as a list;
``config.generator: true`` yields them one by one instead; ``config.fail_at`` raises at that
entity (after yielding the ones before it).
"""

import logging
from collections.abc import Iterable
from typing import ClassVar

from netboxlabs.diode.sdk.ingester import Device, Entity
from pydantic import BaseModel, Field
from worker.backend import Backend
from worker.models import Metadata, Policy

logger = logging.getLogger(__name__)


class CustomConfig(BaseModel):
    """The policy's config as this backend expects it."""

    package: str = Field(..., description="Package name")
    custom: str = Field(..., description="Custom field")
    devices: int = 1
    generator: bool = False
    fail_at: int | None = None


class ScopeItem(BaseModel):
    hostname: str
    username: str
    password: str


class ScopeMap(BaseModel):
    target: str
    port: int


class DescribeBackend(Backend):
    """Describes itself without being constructed; receives the ingest sink at construction."""

    constructed: ClassVar[list["DescribeBackend"]] = []

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        DescribeBackend.constructed.append(self)

    @classmethod
    def describe(cls) -> Metadata:
        return Metadata(name="describe_custom", app_name="describe_app", app_version="1.2.3")

    def _device(self, policy_name: str, policy: Policy, index: int) -> Entity:
        return Entity(
            device=Device(
                name=f"Device {index}",
                device_type="Device Type A",
                platform="Platform A",
                manufacturer="Manufacturer A",
                description=policy_name,
                comments=policy.model_dump_json(),
                site="Site ABC",
                role="Role ABC",
                serial=f"SN{index:08d}",
                asset_tag=f"AT{index:08d}",
                status="active",
                tags=["tag 1", "tag 2"],
            )
        )

    def _produce(self, policy_name: str, policy: Policy, config: CustomConfig) -> Iterable[Entity]:
        for index in range(config.devices):
            if config.fail_at is not None and index == config.fail_at:
                raise RuntimeError(f"backend failed at entity {index}")
            yield self._device(policy_name, policy, index)

    def run(self, policy_name: str, policy: Policy, **kwargs) -> Iterable[Entity]:
        config = CustomConfig(**policy.config.model_dump())
        if isinstance(policy.scope, list):
            scope = [ScopeItem(**item) for item in policy.scope]
        elif isinstance(policy.scope, dict):
            scope = ScopeMap(**policy.scope)
        else:
            scope = policy.scope
        logger.info("policy %r scope: %s", policy_name, scope)
        produced = self._produce(policy_name, policy, config)
        return produced if config.generator else list(produced)
