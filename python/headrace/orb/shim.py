"""Provides orb-worker's ``worker`` modules to backends written for orb-worker.

A package written for orb-worker imports ``worker.backend``, ``worker.models`` and
``worker.exceptions``. :func:`install_worker_modules` appends a finder to the **end** of
``sys.meta_path`` that serves those names from ``headrace.orb._worker`` — but only when no
other finder found them first. Because every regular finder (``sys.path``, site-packages,
editable installs) runs before it, a real orb-worker that is installed always wins and is never
shadowed. headrace calls it before loading a policy's backend package and when
``headrace-orb-worker`` starts; call it yourself before importing such a package directly.
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import importlib.util
import sys
from collections.abc import Sequence
from pathlib import Path
from types import ModuleType

__all__ = ["WORKER_MODULES", "WorkerModuleFinder", "install_worker_modules", "worker_modules_source"]

_SHIM_DIR = Path(__file__).resolve().parent / "_worker"

#: The orb-worker modules headrace provides.
WORKER_MODULES = ("worker", "worker.backend", "worker.models", "worker.exceptions")


class WorkerModuleFinder(importlib.abc.MetaPathFinder):
    """Finds ``worker`` and its provided submodules in headrace, as a last resort."""

    def find_spec(
        self,
        fullname: str,
        path: Sequence[str] | None,
        target: ModuleType | None = None,
    ) -> importlib.machinery.ModuleSpec | None:
        if fullname == "worker":
            return importlib.util.spec_from_file_location(
                "worker", _SHIM_DIR / "__init__.py", submodule_search_locations=[]
            )
        if fullname in WORKER_MODULES:
            parent = sys.modules.get("worker")
            if parent is None or getattr(parent, "__file__", None) != str(_SHIM_DIR / "__init__.py"):
                # The real orb-worker's package was imported: its own finder handles it.
                return None
            leaf = fullname.rpartition(".")[2]
            return importlib.util.spec_from_file_location(fullname, _SHIM_DIR / f"{leaf}.py")
        return None


def install_worker_modules() -> bool:
    """Appends the finder to the end of ``sys.meta_path`` (idempotent). Returns whether it was
    added now."""
    if any(isinstance(finder, WorkerModuleFinder) for finder in sys.meta_path):
        return False
    sys.meta_path.append(WorkerModuleFinder())
    return True


def worker_modules_source() -> str:
    """``"orb-worker"`` when ``import worker`` resolves to the real orb-worker, ``"headrace"``
    when it resolves to headrace's stand-in, ``"none"`` when it cannot be imported."""
    try:
        import worker  # type: ignore[import-not-found,unused-ignore]
    except ImportError:
        return "none"
    return "headrace" if getattr(worker, "__file__", None) == str(_SHIM_DIR / "__init__.py") else "orb-worker"
