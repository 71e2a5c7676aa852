"""orb-worker's policy models as pydantic v2 models: the same fields, defaults and validation.

``Policy``, ``Config``, ``Metadata``, ``PolicyRequest``, ``DiodeConfig`` and ``Status`` behave
as ``worker.models`` does (``model_dump_json``, ``model_validate``, ``model_copy``, pickling,
``==``, subclassing, mutation, use as a pydantic field), so a backend written for orb-worker
finds what it calls. Two deliberate differences:

- ``Config.schedule`` is checked by headrace's own cron parser (the one the scheduler uses),
  so a schedule that validates here is one the runner can run; the message names the problem.
- Cron follows the worker's local time zone (the ``TZ`` environment variable, else the
  system's), as orb-worker's scheduler does; ``Config.timezone`` pins a policy to ``UTC`` or
  to a named IANA zone (``Europe/Berlin``, daylight-saving changes included).
"""

from __future__ import annotations

from datetime import datetime, timezone
from enum import Enum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from headrace._core import next_cron_time

__all__ = [
    "Config",
    "DiodeConfig",
    "Metadata",
    "Policy",
    "PolicyRequest",
    "Status",
    "validate_cron",
]


class Status(Enum):
    """A policy runner's lifecycle (orb-worker's ``worker.models.Status``)."""

    NEW = "new"
    RUNNING = "running"
    FINISHED = "finished"
    FAILED = "failed"


class DiodeConfig(BaseModel):
    """Where and how entities are sent to Diode (orb-worker's ``DiodeConfig``)."""

    target: str | None = None
    prefix: str | None = None
    client_id: str | None = None
    client_secret: str | None = None
    dry_run: bool = False
    dry_run_output_dir: str | None = None


class Metadata(BaseModel):
    """A backend's identity, returned by ``Backend.describe()`` (or the legacy ``setup()``)."""

    name: str
    app_name: str
    app_version: str
    description: str | None = None

    def __init__(
        self,
        name: str | None = None,
        app_name: str | None = None,
        app_version: str | None = None,
        description: str | None = None,
        /,
        **data: Any,
    ) -> None:
        """Keyword arguments as orb-worker's model; positional ``(name, app_name, app_version,
        description)`` accepted too."""
        for key, value in (("name", name), ("app_name", app_name), ("app_version", app_version)):
            if value is not None:
                data[key] = value
        if description is not None:
            data["description"] = description
        super().__init__(**data)


def validate_cron(value: str) -> str:
    """Checks a 5-field cron expression with the scheduler's own parser; raises ``ValueError``
    (a ``ConfigError``) naming what is wrong."""
    next_cron_time(value, datetime.now(timezone.utc))
    return value


def _validate_timezone(value: str) -> str:
    """Checks ``config.timezone`` with the scheduler's own rule ("UTC", "local" or an IANA name)."""
    next_cron_time("@daily", datetime.now(timezone.utc), timezone=value)
    return value


class Config(BaseModel):
    """A policy's ``config`` section: ``package``, optional cron ``schedule``, any extra key."""

    model_config = ConfigDict(extra="allow")

    package: str
    schedule: str | None = Field(default=None, description="cron interval, optional")

    def get(self, key: str, default: Any = None) -> Any:
        """A config value by name (declared or extra), or ``default``."""
        if key in type(self).model_fields:
            return getattr(self, key)
        return (self.model_extra or {}).get(key, default)

    def __getitem__(self, key: str) -> Any:
        """``config["key"]``: a declared or extra value; ``KeyError`` when absent."""
        sentinel = object()
        value = self.get(key, sentinel)
        if value is sentinel:
            raise KeyError(key)
        return value

    @field_validator("schedule")
    @classmethod
    def validate_cron(cls, value: str | None) -> str | None:
        """Rejects a schedule the scheduler could not run."""
        if value is None:
            return value
        try:
            return validate_cron(value)
        except ValueError as exc:
            raise ValueError(f"Invalid cron schedule format: {exc}") from None

    @model_validator(mode="after")
    def validate_timezone(self) -> Config:
        """``timezone`` (an extra key), when given, must name a known IANA zone."""
        value = (self.model_extra or {}).get("timezone")
        if value is not None:
            if not isinstance(value, str):
                raise ValueError("timezone must be a string naming an IANA time zone")
            _validate_timezone(value)
        return self


class Policy(BaseModel):
    """One policy: its ``config`` and its ``scope`` (required, any value; orb-worker's ``Policy``)."""

    config: Config
    scope: Any = Field(..., description="Scope data; must not be None")


class PolicyRequest(BaseModel):
    """A document of named policies, as posted to ``/api/v1/policies``."""

    policies: dict[str, Policy]
