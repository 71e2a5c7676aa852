"""``worker.backend`` on headrace: ``Backend`` (headrace's), the ``IngestSink`` protocol and
``load_class``."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Protocol, runtime_checkable

from headrace.backend import Backend
from headrace.errors import ConfigError
from headrace.orb.models import Metadata, Policy

__all__ = ["Backend", "IngestSink", "Metadata", "Policy", "load_class"]


@runtime_checkable
class IngestSink(Protocol):
    """How a backend hands run outcomes to the worker outside the scheduled ``run()`` cycle."""

    def ingest(self, entities: Iterable[Any], **kwargs: Any) -> Any:
        """Ingests ``entities`` as one tracked run; raises an ``IngestError`` after recording a
        failed run."""
        ...

    def record_failure(self, error: Exception, **kwargs: Any) -> Any:
        """Records a FAILED run for a collection that produced no entities."""
        ...


def load_class(module_name: str) -> type[Backend]:
    """The ``Backend`` subclass a module defines (orb-worker's ``load_class``)."""
    from headrace.runner import find_backend_class

    try:
        return find_backend_class(module_name)
    except ConfigError as exc:
        raise RuntimeError(
            f"Failed to load a class inheriting from 'Backend' in module '{module_name}': {exc}"
        ) from exc
