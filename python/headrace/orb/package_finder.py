"""Bundle lookup as orb-worker does it: with ``BUNDLES_ROOT_PATH`` set, a policy's package may
live in ``$BUNDLES_ROOT_PATH/<bundle>/current/`` (a package directory or a single ``.py``), the
layout orb-agent's package manager writes. The finder sits at the end of ``sys.meta_path``, so
installed packages win; when a bundle's ``current`` link moves to a new version,
:func:`evict_if_moved` drops the old modules so the next load imports the new code.
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import importlib.util
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from types import ModuleType

__all__ = ["BundleFinder", "bundles_root", "evict_if_moved", "install_bundle_finder"]

logger = logging.getLogger("headrace.orb")


def bundles_root() -> Path | None:
    """``$BUNDLES_ROOT_PATH`` as a path, or ``None`` when unset."""
    value = os.environ.get("BUNDLES_ROOT_PATH")
    return Path(value) if value else None


def _current_dirs() -> list[Path]:
    root = bundles_root()
    if root is None or not root.is_dir():
        return []
    try:
        return [bundle / "current" for bundle in sorted(root.iterdir()) if (bundle / "current").exists()]
    except OSError:
        return []


class BundleFinder(importlib.abc.MetaPathFinder):
    """Finds top-level modules in the bundles' ``current`` directories."""

    def find_spec(
        self,
        fullname: str,
        path: Sequence[str] | None,
        target: ModuleType | None = None,
    ) -> importlib.machinery.ModuleSpec | None:
        if "." in fullname:
            return None
        for current in _current_dirs():
            directory = current.resolve()
            package = directory / fullname / "__init__.py"
            if package.is_file():
                return importlib.util.spec_from_file_location(
                    fullname, package, submodule_search_locations=[str(package.parent)]
                )
            module = directory / f"{fullname}.py"
            if module.is_file():
                return importlib.util.spec_from_file_location(fullname, module)
        return None


def install_bundle_finder() -> bool:
    """Appends the finder when ``BUNDLES_ROOT_PATH`` is set (idempotent); returns whether it is
    installed."""
    if bundles_root() is None:
        return False
    if not any(isinstance(finder, BundleFinder) for finder in sys.meta_path):
        sys.meta_path.append(BundleFinder())
        logger.info("bundle lookup installed (BUNDLES_ROOT_PATH=%s)", bundles_root())
    return True


def evict_if_moved(package: str) -> bool:
    """Drops ``package`` (and its submodules) from ``sys.modules`` when it was imported from a
    bundle directory other than the bundle's ``current`` target now; returns whether it did."""
    root = bundles_root()
    top = package.split(".", 1)[0].split(":", 1)[0]
    module = sys.modules.get(top)
    if root is None or module is None:
        return False
    for name in (top, top.replace("_", "-")):
        current = root / name / "current"
        if current.exists():
            break
    else:
        return False
    resolved = current.resolve()
    origin = getattr(module, "__file__", None)
    if origin is None or Path(origin).resolve().is_relative_to(resolved):
        return False
    for key in [k for k in sys.modules if k == top or k.startswith(top + ".")]:
        del sys.modules[key]
    logger.info("bundle %s moved to %s: its modules will be imported again", top, resolved)
    return True
