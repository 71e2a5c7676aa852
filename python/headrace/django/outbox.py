"""Enqueue on Django's connection, inside the caller's transaction (``headrace.django.enqueue``).

The item is inserted by the same connection and transaction as the caller's own writes, so it
commits or rolls back with them. The statement, its parameters, the JSON encoding, the size
limit, ``run_at`` and ``max_attempts`` all come from the Rust core (``ExternalOutboxSql``);
Python only executes them.
"""

from __future__ import annotations

import functools
import itertools
import threading
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from asgiref.sync import sync_to_async
from django.db import connections, transaction

from headrace.django import db
from headrace.django.conf import get_settings
from headrace.errors import ConfigError, StoreError

if TYPE_CHECKING:
    from headrace._core import EnqueueBatch

__all__ = [
    "Enqueued",
    "aenqueue",
    "aenqueue_many",
    "enqueue",
    "enqueue_many",
    "resolve_alias",
    "track_atomic_order",
]

#: Tries of insert-then-lookup when the live holder of a dedupe key finishes in between.
_DEDUPE_TRIES = 3


@dataclass(frozen=True)
class Enqueued:
    """One item this process enqueued (what :func:`headrace.django.testing.capture_outbox` records)."""

    id: int | None
    topic: str
    payload: Any
    alias: str
    options: Mapping[str, Any]
    on_commit: bool


_captures: list[list[Enqueued]] = []
_capture_lock = threading.Lock()


@contextmanager
def _capture() -> Iterator[list[Enqueued]]:
    records: list[Enqueued] = []
    with _capture_lock:
        _captures.append(records)
    try:
        yield records
    finally:
        with _capture_lock:
            _captures.remove(records)


def _record(records: list[Enqueued]) -> None:
    if _captures:
        with _capture_lock:
            for sink in _captures:
                sink.extend(records)


def _require_ready() -> None:
    from django.apps import apps

    if not apps.ready:
        raise ConfigError(
            "headrace.django.enqueue() was called before Django's app registry is ready: call it "
            "from a view, a task, a signal receiver or AppConfig.ready(), not at import time"
        )
    if not apps.is_installed("headrace.django"):
        raise ConfigError('add "headrace.django" to INSTALLED_APPS, then run manage.py migrate')


#: Entry order of ``atomic`` blocks (stamped by :func:`track_atomic_order`), so the innermost
#: open block can be told across database aliases.
_entries = itertools.count(1)
_STAMP = "_headrace_entered"


def track_atomic_order() -> None:
    """Stamps every ``transaction.atomic`` block with its entry order (installed once by the
    app's ``ready()``); Django records open blocks per connection but not across connections."""
    from django.db.transaction import Atomic

    enter = Atomic.__enter__
    if getattr(enter, _STAMP, False):
        return

    @functools.wraps(enter)
    def __enter__(self: Atomic) -> None:
        setattr(self, _STAMP, next(_entries))
        enter(self)

    setattr(__enter__, _STAMP, True)
    Atomic.__enter__ = __enter__  # type: ignore[method-assign]


def _entered(conn: Any) -> int:
    """When ``conn``'s innermost open block was entered; 0 when unknown, and for the blocks
    Django's ``TestCase`` wraps every test in (they are not the test's own transactions)."""
    blocks = getattr(conn, "atomic_blocks", None) or ()
    if not blocks or getattr(blocks[-1], "_from_testcase", False):
        return 0
    return int(getattr(blocks[-1], _STAMP, 0))


def resolve_alias(using: str | None = None) -> str:
    """``using``, else the alias of the innermost open ``atomic`` block (the one entered last,
    on whichever database), else ``HEADRACE["DATABASE"]``."""
    if using is not None:
        if using not in connections.settings:
            raise ConfigError(f"using={using!r} is not in DATABASES (aliases: {', '.join(connections.settings)})")
        return using
    default = db.outbox_alias()
    active = [c for c in connections.all(initialized_only=True) if c.in_atomic_block]
    if not active:
        return default
    if len(active) == 1:
        return str(active[0].alias)
    order = sorted(active, key=_entered)
    if _entered(order[-1]) > _entered(order[-2]):
        return str(order[-1].alias)
    # Blocks opened before the app was ready carry no stamp: the HEADRACE alias, if open.
    if default in {c.alias for c in active}:
        return default
    raise ConfigError(
        f"atomic blocks are open on {', '.join(sorted(c.alias for c in active))} and none is "
        f"HEADRACE['DATABASE'] ({default!r}): pass using= to choose the transaction the item joins"
    )


def _run(alias: str, pairs: Sequence[tuple[Any, Any]]) -> list[int]:
    ids = []
    with connections[alias].cursor() as cursor:
        for insert, existing in pairs:
            ids.append(_run_one(cursor, insert, existing))
    return ids


def _run_one(
    cursor: Any,
    insert: tuple[str, tuple[Any, ...]],
    existing: tuple[str, tuple[Any, ...]] | None,
    *,
    existing_first: bool = False,
) -> int:
    for attempt in range(_DEDUPE_TRIES):
        row = None
        if not (existing_first and attempt == 0):
            cursor.execute(*insert)
            row = cursor.fetchone()
        if row is None and existing is not None:
            cursor.execute(*existing)
            row = cursor.fetchone()
        if row is not None:
            return int(row[0])
    raise StoreError("enqueue found its dedupe key taken and then free again three times in a row; retry the call")


def _run_batch(alias: str, batch: EnqueueBatch) -> list[int]:
    """One statement for the whole batch; an item whose dedupe key another item held is settled
    by its own statements (the live holder's id, or an insert when the holder just finished)."""
    if not len(batch):
        return []
    with connections[alias].cursor() as cursor:
        cursor.execute(*batch.insert)
        found = batch.resolve(cursor.fetchall())
        ids = []
        for index, item_id in enumerate(found):
            if item_id is None:
                item_id = _run_one(cursor, *batch.fallback(index), existing_first=True)
            ids.append(item_id)
    return ids


def _options(
    priority: int,
    delay_seconds: float,
    run_at: datetime | float | None,
    dedupe_key: str | None,
    max_attempts: int | None,
    trace_id: str | None,
) -> dict[str, Any]:
    return {
        "priority": priority,
        "delay_seconds": delay_seconds,
        "run_at": run_at,
        "dedupe_key": dedupe_key,
        "max_attempts": max_attempts,
        "trace_id": trace_id,
    }


def _guard(alias: str) -> None:
    if get_settings().REQUIRE_TRANSACTION and not connections[alias].in_atomic_block:
        raise ConfigError(
            f"HEADRACE['REQUIRE_TRANSACTION'] is on and enqueue was called outside transaction.atomic() "
            f"on {alias!r}: wrap the writes and the enqueue in one atomic block"
        )


def enqueue(
    topic: str,
    payload: Any,
    *,
    priority: int = 0,
    delay_seconds: float = 0.0,
    run_at: datetime | float | None = None,
    dedupe_key: str | None = None,
    max_attempts: int | None = None,
    trace_id: str | None = None,
    using: str | None = None,
    on_commit: bool = False,
) -> int | None:
    """Adds an item to the outbox in the caller's transaction; returns its id.

    A ``dedupe_key`` held by a pending or processing item returns that item's id, without
    aborting a PostgreSQL transaction. ``on_commit=True`` inserts only after the transaction
    commits (nothing is queued if it rolls back; no atomicity with your writes) and returns None.
    """
    _require_ready()
    alias = resolve_alias(using)
    options = _options(priority, delay_seconds, run_at, dedupe_key, max_attempts, trace_id)
    pair = db.external_sql(alias).enqueue(topic, payload, **options)
    if on_commit:
        transaction.on_commit(lambda: _run(alias, [pair]), using=alias)
        _record([Enqueued(None, topic, payload, alias, options, True)])
        return None
    _guard(alias)
    item_id = _run(alias, [pair])[0]
    _record([Enqueued(item_id, topic, payload, alias, options, False)])
    return item_id


def enqueue_many(items: Sequence[Mapping[str, Any]], *, using: str | None = None) -> list[int]:
    """Enqueues dicts (``topic``, ``payload`` and any :func:`enqueue` option) in the caller's
    transaction; nothing is written when any item is invalid. Returns the ids in input order."""
    _require_ready()
    alias = resolve_alias(using)
    items = [dict(item) for item in items]
    batch = db.external_sql(alias).enqueue_batch(items)
    _guard(alias)
    if connections[alias].in_atomic_block:
        ids = _run_batch(alias, batch)
    else:
        with transaction.atomic(using=alias):
            ids = _run_batch(alias, batch)
    _record(
        [
            Enqueued(
                item_id,
                item["topic"],
                item["payload"],
                alias,
                {k: v for k, v in item.items() if k not in ("topic", "payload")},
                False,
            )
            for item_id, item in zip(ids, items, strict=True)
        ]
    )
    return ids


async def aenqueue(topic: str, payload: Any, **options: Any) -> int | None:
    """:func:`enqueue` from async code, on the caller's sync thread (thread-sensitive), so it
    joins the transaction opened there."""
    return await sync_to_async(enqueue, thread_sensitive=True)(topic, payload, **options)


async def aenqueue_many(items: Sequence[Mapping[str, Any]], *, using: str | None = None) -> list[int]:
    return await sync_to_async(enqueue_many, thread_sensitive=True)(items, using=using)
