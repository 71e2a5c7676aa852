"""The orb-worker drop-in: orb-worker backends run unchanged on headrace and speak Diode.

- :mod:`headrace.orb.models` — ``Policy``, ``Config``, ``Metadata``, ``PolicyRequest``,
  ``DiodeConfig``, ``Status`` as pydantic v2 models.
- :func:`install_worker_modules` — ``worker.backend``/``worker.models``/``worker.exceptions``
  for packages written for orb-worker, never shadowing a real orb-worker.
- :class:`DiodeSink` — chunks to Diode through the diode SDK's client (or its dry-run client).
- :class:`OrbWorker` and ``headrace-orb-worker`` — orb-worker's policy manager, command line and
  HTTP API, with durable policies (:class:`PolicyStore`) and one validation rule
  (:func:`validate_policy_document`) shared with Django.
"""

from __future__ import annotations

from headrace.orb.diode import DiodeSink
from headrace.orb.models import Config, DiodeConfig, Metadata, Policy, PolicyRequest, Status
from headrace.orb.policies import (
    PolicyDocumentError,
    PolicyStore,
    parse_policy_request,
    validate_policy_document,
    validation_errors,
)
from headrace.orb.service import OrbWorker, PolicyExistsError, PolicyNotFoundError
from headrace.orb.shim import install_worker_modules, worker_modules_source

__all__ = [
    "Config",
    "DiodeConfig",
    "DiodeSink",
    "Metadata",
    "OrbWorker",
    "Policy",
    "PolicyDocumentError",
    "PolicyExistsError",
    "PolicyNotFoundError",
    "PolicyRequest",
    "PolicyStore",
    "Status",
    "install_worker_modules",
    "parse_policy_request",
    "validate_policy_document",
    "validation_errors",
    "worker_modules_source",
]
