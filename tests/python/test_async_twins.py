"""Every async method of the store is the twin of a sync one, with the same parameters."""

from __future__ import annotations

import inspect

from headrace.outbox import OutboxStore


def twin_pairs() -> list[tuple[str, str]]:
    names = set(dir(OutboxStore))
    return sorted((name[1:], name) for name in names if name.startswith("a") and name[1:] in names)


#: Store members that do no I/O of their own, so they have no async twin.
WITHOUT_TWIN = {"claim_strategy", "connect", "iter_claims", "lease_seconds", "retry", "url"}


def test_every_store_call_that_does_io_has_an_async_twin() -> None:
    public = {name for name in dir(OutboxStore) if not name.startswith("_")}
    synchronous = {name for name in public if not (name.startswith("a") and name[1:] in public)}
    assert {sync for sync, _ in twin_pairs()} == synchronous - WITHOUT_TWIN


def test_every_twin_takes_the_same_parameters_as_its_sync_method() -> None:
    for sync_name, async_name in twin_pairs():
        sync = inspect.signature(getattr(OutboxStore, sync_name))
        asynchronous = inspect.signature(getattr(OutboxStore, async_name))
        assert str(asynchronous) == str(sync), f"{async_name}{asynchronous} differs from {sync_name}{sync}"
