"""pytest fixtures on temporary SQLite: ``headrace_outbox``, ``headrace_state``, ``headrace_worker``.

Enable with ``pytest_plugins = ["headrace.testing.fixtures"]`` in a ``conftest.py``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest

__all__ = ["headrace_outbox", "headrace_state", "headrace_worker"]


@pytest.fixture
def headrace_outbox(tmp_path: Path) -> Iterator[Any]:
    """An ``OutboxStore`` on a fresh SQLite file (short leases, fast retries), closed afterwards."""
    from headrace.outbox import OutboxStore, RetryPolicy

    store = OutboxStore.connect(
        f"sqlite:///{tmp_path / 'outbox.db'}",
        lease_seconds=5.0,
        retry=RetryPolicy(max_attempts=3, base_seconds=0.05, factor=1.0, max_seconds=0.1, jitter=0.0),
    )
    yield store
    close = getattr(store, "close", None)
    if close is not None:
        close()


@pytest.fixture
def headrace_state(tmp_path: Path) -> Iterator[Any]:
    """A ``StateBackend`` on a fresh SQLite file."""
    from headrace.state import StateBackend

    state = StateBackend.connect(f"sqlite:///{tmp_path / 'state.db'}")
    yield state
    state.wait_for_all_async_operations()


@pytest.fixture
def headrace_worker(headrace_outbox: Any) -> Callable[..., Any]:
    """Builds an ``OutboxWorker`` on ``headrace_outbox``: ``headrace_worker(handlers, **options)``.

    Call ``.run_until_empty(timeout)`` on it to drain every due item.
    """
    from headrace.worker import OutboxWorker

    def make(handlers: Mapping[str, Any] | Any, **options: Any) -> Any:
        options.setdefault("poll_interval", 0.05)
        options.setdefault("reaper_interval", None)
        return OutboxWorker(headrace_outbox, handlers, **options)

    return make
