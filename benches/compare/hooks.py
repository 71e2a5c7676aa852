"""Rows that join the comparison when the part of headrace they measure has landed.

Each hook names the headrace module it needs. ``available()`` says whether it imports here; the
harness lists an unavailable row in the report with the reason instead of a number. To add a
row, add a function to ``KINDS`` and a ``Row`` in ``run.py`` whose ``kind`` is that key.

- ``state``: the pynenc state backend (issue #15, ``headrace.pynenc``) against pynenc's own
  SQLite state backend and pynenc-rustvello, on the same workload.
- ``orb``: the policy runner (issue #10, ``headrace.orb``) against the real orb-worker.
- ``django``: enqueue inside ``transaction.atomic`` (issue #11, ``headrace.django``) against
  django-tasks-db.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any

NEEDS = {
    "state": ("headrace.pynenc", "issue #15 (pynenc state backend)"),
    "orb": ("headrace.orb", "issue #10 (orb-worker drop-in)"),
    "django": ("headrace.django", "issue #11 (Django integration)"),
}


def available(kind: str) -> str | None:
    """None when the hook can run; otherwise why not."""
    module, issue = NEEDS[kind]
    try:
        importlib.import_module(module)
    except ImportError:
        return f"`{module}` is not on main yet: {issue}"
    if kind not in KINDS:
        return f"`{module}` has landed; its measurement is not written yet"
    return None


KINDS: dict[str, Callable[[str, dict[str, Any], str], dict[str, Any]]] = {}
