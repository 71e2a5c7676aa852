"""``worker.models`` on headrace: orb-worker's pydantic policy models."""

from headrace.orb.models import Config, DiodeConfig, Metadata, Policy, PolicyRequest, Status

__all__ = ["Config", "DiodeConfig", "Metadata", "Policy", "PolicyRequest", "Status"]
