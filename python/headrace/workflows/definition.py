"""Workflow definitions: a trigger, JsonLogic conditions and ordered steps, versioned.

Defined in Python (:class:`Workflow`) or YAML (:func:`load_workflows`); every definition is
checked when it is built: the trigger's glob patterns, the conditions (unknown operators, depth),
step ids (unique, usable as ``steps.<id>``) and every input template (it must compile).
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import yaml

from headrace._core import jsonlogic_check, jsonlogic_matches
from headrace.errors import ConfigError

__all__ = ["Step", "Trigger", "Workflow", "load_workflows"]

_ID = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


@dataclass(frozen=True)
class Trigger:
    """Which events start the workflow: a source and an event type, both glob patterns."""

    event_type: str = "*"
    source: str = "*"

    def matches(self, source: str, event_type: str) -> bool:
        return fnmatch.fnmatchcase(source, self.source) and fnmatch.fnmatchcase(event_type, self.event_type)

    def to_dict(self) -> dict[str, str]:
        return {"source": self.source, "event_type": self.event_type}


@dataclass(frozen=True)
class Step:
    """One connector call: ``input`` is rendered (templates, secrets, env) when the step runs."""

    id: str
    connector: str
    action: str
    input: Mapping[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "connector": self.connector, "action": self.action, "input": dict(self.input)}


@dataclass(frozen=True)
class Workflow:
    """A versioned workflow. A run keeps the definition (and version) it started with."""

    key: str
    trigger: Trigger
    steps: Sequence[Step]
    conditions: Mapping[str, Any] | bool | None = None
    version: int = 1
    name: str = ""
    active: bool = True

    def __post_init__(self) -> None:
        if not isinstance(self.key, str) or not self.key:
            raise ConfigError(f"a workflow needs a non-empty key, got {self.key!r}")
        if not isinstance(self.version, int) or isinstance(self.version, bool) or self.version < 1:
            raise ConfigError(f"workflow {self.key!r}: version must be a positive integer, got {self.version!r}")
        if not self.steps:
            raise ConfigError(f"workflow {self.key!r} has no steps")
        seen: set[str] = set()
        for step in self.steps:
            if not isinstance(step, Step):
                raise ConfigError(f"workflow {self.key!r}: steps must be Step objects, got {step!r}")
            if not _ID.match(step.id):
                raise ConfigError(
                    f"workflow {self.key!r}: step id {step.id!r} must be an identifier (letters, digits, '_')"
                )
            if step.id in seen:
                raise ConfigError(f"workflow {self.key!r}: step id {step.id!r} is used twice")
            seen.add(step.id)
            if not isinstance(step.input, Mapping):
                raise ConfigError(f"workflow {self.key!r}: the input of step {step.id!r} must be a mapping")
        if self.conditions is not None and not isinstance(self.conditions, bool):
            try:
                jsonlogic_check(self.conditions)
            except ConfigError as exc:
                raise ConfigError(f"workflow {self.key!r}: conditions: {exc.message}") from None

    def matches(self, event: Mapping[str, Any], context: Mapping[str, Any] | None = None) -> bool:
        """Whether ``event`` (``source``, ``type``, ``payload``) starts this workflow."""
        if not self.active or not self.trigger.matches(str(event.get("source", "")), str(event.get("type", ""))):
            return False
        if self.conditions is None or self.conditions is True:
            return True
        if self.conditions is False:
            return False
        return bool(jsonlogic_matches(self.conditions, {"event": dict(event), "context": dict(context or {})}))

    def to_dict(self) -> dict[str, Any]:
        return {
            "key": self.key,
            "version": self.version,
            "name": self.name,
            "trigger": self.trigger.to_dict(),
            "conditions": self.conditions,
            "steps": [s.to_dict() for s in self.steps],
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Workflow:
        if not isinstance(data, Mapping):
            raise ConfigError(f"a workflow definition is a mapping, got {type(data).__name__}")
        unknown = set(data) - {"key", "version", "name", "trigger", "conditions", "steps", "active"}
        if unknown:
            raise ConfigError(f"workflow {data.get('key')!r} has unknown fields {sorted(unknown)}")
        trigger = data.get("trigger") or {}
        if isinstance(trigger, str):
            trigger = {"event_type": trigger}
        steps = []
        for raw in data.get("steps") or []:
            if not isinstance(raw, Mapping) or not {"id", "connector", "action"} <= set(raw):
                raise ConfigError(f"workflow {data.get('key')!r}: a step needs id, connector and action, got {raw!r}")
            steps.append(Step(str(raw["id"]), str(raw["connector"]), str(raw["action"]), dict(raw.get("input") or {})))
        return cls(
            key=str(data.get("key", "")),
            version=data.get("version", 1),
            name=str(data.get("name", "")),
            trigger=Trigger(
                event_type=str(trigger.get("event_type", "*")),
                source=str(trigger.get("source", "*")),
            ),
            conditions=data.get("conditions"),
            steps=steps,
            active=bool(data.get("active", True)),
        )


def load_workflows(text: str) -> list[Workflow]:
    """Workflows from YAML: one mapping, a list, or ``{"workflows": [...]}``."""
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"workflow YAML does not parse: {exc}") from None
    if isinstance(data, Mapping) and "workflows" in data:
        data = data["workflows"]
    if isinstance(data, Mapping):
        data = [data]
    if not isinstance(data, list):
        raise ConfigError("workflow YAML must hold a mapping or a list of mappings")
    return [Workflow.from_dict(item) for item in data]
