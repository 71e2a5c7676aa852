"""Where task attempts are recorded: the state backend on the outbox's database (a process-local
``memory://`` one when that database is Django's in-memory SQLite test database, which no other
connection can open)."""

from __future__ import annotations

import threading
from typing import Any

from headrace.django import db

__all__ = ["reset", "state_for"]

_lock = threading.Lock()
_states: dict[tuple[str, str], Any] = {}


def state_for(alias: str) -> Any:
    """The ``StateBackend`` for ``alias``, opened on first use (never at import or in ``__init__``)."""
    from django.db import connections

    from headrace.state import StateBackend

    key = (alias, str(connections[alias].settings_dict.get("NAME")))
    state = _states.get(key)
    if state is None or state.closed:
        with _lock:
            state = _states.get(key)
            if state is None or state.closed:
                if db.is_memory_sqlite(alias):
                    state = StateBackend.connect("memory://")
                else:
                    state = db.open_state(alias)
                _states[key] = state
    return state


def reset() -> None:
    """Closes every backend opened here (tests, settings changes)."""
    with _lock:
        states = list(_states.values())
        _states.clear()
    for state in states:
        if not state.closed:
            state.close()
