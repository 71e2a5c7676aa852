"""Policy documents: parsing and validation (the one rule for the HTTP API, the command line and
Django), and durable storage of posted policies on the state backend.

- :func:`parse_policy_request` turns a YAML/JSON document (or a mapping) into a validated
  :class:`~headrace.orb.models.PolicyRequest`, resolving ``${VAR}`` references first.
- :func:`validate_policy_document` returns orb-worker's error list
  (``[{"field", "type", "error"}]``) instead of raising: empty when the document is valid.
- :class:`PolicyStore` keeps each posted policy *as written* (``${VAR}`` references unresolved,
  so secrets taken from the environment never reach the database) in the run store's state
  backend, so a restarted worker restarts them.

headrace is stricter than orb-worker on one point: a ``${VAR}`` whose variable is unset is an
error naming the variable (orb-worker silently keeps the literal text). ``${VAR:-default}`` gives a
default, ``$${`` a literal ``${``.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Mapping
from typing import Any

import yaml
from pydantic import ValidationError

from headrace._core import resolve_env_references
from headrace.errors import ConfigError
from headrace.orb.models import Policy, PolicyRequest

__all__ = [
    "POLICY_STORE_WORKFLOW",
    "PolicyDocumentError",
    "PolicyStore",
    "parse_policy_request",
    "resolve_env",
    "validate_policy_document",
    "validation_errors",
]

#: The workflow (id, type) under which posted policies are stored on the state backend.
POLICY_STORE_WORKFLOW = ("headrace.orb.policies", "headrace.orb.policies")
_POLICIES_KEY = "policies"


class PolicyDocumentError(ConfigError):
    """A policy document that is not valid YAML or not a mapping (orb-worker answers 400)."""

    code = "policy_document_error"


def resolve_env(document: Any) -> Any:
    """``document`` with every ``${VAR}`` in its strings replaced from the environment (the
    core's rule); an unset variable raises ``ConfigError`` naming it and where it is."""
    return json.loads(resolve_env_references(json.dumps(document)))


def _load(document: str | bytes | Mapping[str, Any]) -> Any:
    if isinstance(document, Mapping):
        return dict(document)
    try:
        loaded = yaml.safe_load(document)
    except yaml.YAMLError as exc:
        raise PolicyDocumentError(f"Invalid YAML format: {exc}") from exc
    if not isinstance(loaded, dict):
        raise PolicyDocumentError(
            f"a policy document must be a mapping with a 'policies' key, got {type(loaded).__name__}"
        )
    return loaded


def parse_policy_request(document: str | bytes | Mapping[str, Any]) -> PolicyRequest:
    """Parses and validates a policy document. Raises ``PolicyDocumentError`` (bad YAML),
    ``ConfigError`` (an unset ``${VAR}``) or pydantic's ``ValidationError``."""
    return PolicyRequest.model_validate(resolve_env(_load(document)))


def validation_errors(error: ValidationError) -> list[dict[str, str]]:
    """orb-worker's 403 body: one ``{"field", "type", "error"}`` per validation error, the field a
    dotted path such as ``policies.p1.config.schedule``."""
    return [
        {"field": ".".join(str(part) for part in item["loc"]), "type": item["type"], "error": item["msg"]}
        for item in error.errors()
    ]


def validate_policy_document(document: str | bytes | Mapping[str, Any]) -> list[dict[str, str]]:
    """The problems of a policy document, as ``[{"field", "type", "error"}]`` (empty: valid).

    YAML errors are reported with ``type`` ``"yaml"`` and unset variables with ``"env"``, so a
    caller (a Django form, the admin) can show every problem the worker would refuse.
    """
    try:
        parse_policy_request(document)
    except PolicyDocumentError as exc:
        return [{"field": "", "type": "yaml", "error": str(exc)}]
    except ValidationError as exc:
        return validation_errors(exc)
    except ConfigError as exc:
        return [{"field": "", "type": "env", "error": str(exc)}]
    return []


class PolicyStore:
    """Posted policies, durable on ``state`` (a ``headrace.state.StateBackend``).

    Each policy is kept as written (before ``${VAR}`` resolution) under its name. Safe to share
    between threads of one process; the last writer wins between processes.
    """

    def __init__(self, state: Any) -> None:
        from headrace.state import WorkflowIdentity

        self._state = state
        self._workflow = WorkflowIdentity(*POLICY_STORE_WORKFLOW)
        self._lock = threading.Lock()

    @property
    def state(self) -> Any:
        """The state backend policies are stored on."""
        return self._state

    def _read(self) -> dict[str, Any]:
        stored = self._state.get_workflow_data(self._workflow, _POLICIES_KEY, None)
        return dict(stored) if isinstance(stored, Mapping) else {}

    def _write(self, policies: dict[str, Any]) -> None:
        self._state.set_workflow_data(self._workflow, _POLICIES_KEY, policies)
        self._state.wait_for_all_async_operations()

    def save(self, name: str, policy: Mapping[str, Any]) -> None:
        """Stores (or replaces) the policy ``name`` as written (a mapping with ``config`` and
        ``scope``)."""
        with self._lock:
            policies = self._read()
            policies[name] = dict(policy)
            self._write(policies)

    def delete(self, name: str) -> bool:
        """Forgets ``name``; returns whether it was stored."""
        with self._lock:
            policies = self._read()
            if name not in policies:
                return False
            del policies[name]
            self._write(policies)
            return True

    def get(self, name: str) -> dict[str, Any] | None:
        """The policy ``name`` as written, or ``None``."""
        stored = self._read().get(name)
        return dict(stored) if isinstance(stored, Mapping) else None

    def all(self) -> dict[str, dict[str, Any]]:
        """Every stored policy as written, by name (in the order they were first stored)."""
        return {name: dict(policy) for name, policy in self._read().items() if isinstance(policy, Mapping)}

    def validated(self, name: str) -> Policy:
        """The stored policy ``name`` with ``${VAR}`` resolved, validated; ``NotFoundError`` when
        it is not stored."""
        from headrace.errors import NotFoundError

        raw = self.get(name)
        if raw is None:
            raise NotFoundError(f"policy {name!r} is not stored")
        return Policy.model_validate(resolve_env(raw))
