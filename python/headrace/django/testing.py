"""Test helpers that work inside a plain ``TestCase`` (nothing committed) and on Django's
in-memory SQLite test database.

* :func:`capture_outbox` records what this process enqueues.
* :func:`assert_enqueued` looks for items in the outbox table through Django's connection.
* :func:`run_outbox` claims and dispatches items **through Django's connection**, with the core's
  claim, acknowledgement and retry statements, so handlers see the test's uncommitted rows.
"""

from __future__ import annotations

import asyncio
import inspect
import json
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from django.db import connections, transaction

from headrace.django import db
from headrace.django.outbox import Enqueued, _capture, resolve_alias

__all__ = ["ANY", "RunReport", "assert_enqueued", "capture_outbox", "outbox_items", "run_outbox"]


class _Any:
    def __repr__(self) -> str:
        return "ANY"


#: Matches any payload in :func:`assert_enqueued`.
ANY: Any = _Any()


@contextmanager
def capture_outbox() -> Iterator[list[Enqueued]]:
    """Records every ``headrace.django.enqueue`` made inside the block (the items are still
    written): ``with capture_outbox() as captured: ...; captured[0].topic``."""
    with _capture() as records:
        yield records


def outbox_items(*, topic: str | None = None, status: str | None = None, using: str | None = None) -> list[Any]:
    """Outbox items (``OutboxItem``) read through Django's connection, oldest first."""
    alias = resolve_alias(using)
    sql = db.external_sql(alias)
    with connections[alias].cursor() as cursor:
        cursor.execute(*sql.list_items(topic=topic, status=status))
        return list(sql.items(cursor.fetchall()))


def assert_enqueued(
    topic: str,
    payload: Any = ANY,
    *,
    count: int | None = None,
    status: str | None = "pending",
    using: str | None = None,
) -> list[Any]:
    """Asserts the outbox holds items of ``topic`` (with ``payload``, and exactly ``count`` of
    them when given, else at least one) in ``status``; returns the matching items."""
    items = outbox_items(topic=topic, status=status, using=using)
    matching = [i for i in items if payload is ANY or i.payload == _normalised(payload)]
    expected = f"{count} item(s)" if count is not None else "an item"
    if (count is None and not matching) or (count is not None and len(matching) != count):
        seen = [f"#{i.id} {i.status} {json.dumps(i.payload)}" for i in items] or ["nothing"]
        raise AssertionError(
            f"expected {expected} on topic {topic!r}"
            + (f" with payload {payload!r}" if payload is not ANY else "")
            + (f" in status {status!r}" if status else "")
            + f", found {len(matching)}; the topic holds: {'; '.join(seen)}"
        )
    return matching


def _normalised(payload: Any) -> Any:
    return json.loads(json.dumps(payload))


@dataclass
class RunReport:
    """What :func:`run_outbox` did."""

    processed: int = 0
    completed: int = 0
    retried: int = 0
    failed: int = 0
    errors: list[str] = field(default_factory=list)


def run_outbox(
    handlers: Mapping[str, Any] | None = None,
    *,
    using: str | None = None,
    topics: Sequence[str] | None = None,
    exclude_topics: Sequence[str] = (),
    due_by: datetime | None = None,
    batch_size: int = 100,
    max_batches: int = 1000,
    worker_id: str = "headrace-test",
) -> RunReport:
    """Claims and dispatches items due when the call starts (or by ``due_by``) through Django's
    connection until none is left.

    ``handlers`` (topic → callable or ``QueuedClient``) are added to the configured ones
    (``HEADRACE["HANDLERS"]`` and the Tasks backends). A failure retries with the core's backoff
    (so the item is due again in a later call: pass ``due_by`` to treat later items as due) or
    dead-letters. Runs inside the caller's transaction when there is one.
    """
    from headrace.django.handlers import configured_handlers
    from headrace.worker import _failure, _route, unclaimed_topics

    alias = resolve_alias(using)
    sql = db.external_sql(alias)
    routes = {topic: _route(spec) for topic, spec in configured_handlers(handlers, hygiene=False).items()}
    report = RunReport()
    due_by = due_by or datetime.now(timezone.utc)  # a retried item waits for the next call
    exclude = unclaimed_topics(routes, exclude_topics)
    for _ in range(max_batches):
        with transaction.atomic(using=alias):
            with connections[alias].cursor() as cursor:
                cursor.execute(
                    *sql.claim(
                        worker_id,
                        batch_size,
                        topics=list(topics) if topics is not None else None,
                        exclude_topics=exclude,
                        due_by=due_by,
                    )
                )
                items = sorted(sql.items(cursor.fetchall()), key=lambda i: (-i.priority, i.run_at, i.id))
        if not items:
            break
        for item in items:
            report.processed += 1
            route = routes.get(item.topic)
            try:
                if route is None:
                    known = ", ".join(sorted(routes)) or "none"
                    raise LookupError(f"no handler for topic {item.topic!r} (handled: {known})")
                result = route.call(item)
                if inspect.isawaitable(result):
                    _await(result)
            except Exception as exc:
                failure = _failure(exc)
                error = failure.error or ""
                retryable = bool(failure.retryable) and route is not None
                status, statement = sql.settle_failure(
                    item, worker_id, error, retryable=retryable, retry_after=failure.retry_after
                )
                _execute(alias, statement)
                report.errors.append(f"#{item.id} {item.topic}: {error}")
                if status == "pending":
                    report.retried += 1
                else:
                    report.failed += 1
                continue
            _execute(alias, sql.ack([item.id], worker_id))
            report.completed += 1
    return report


def _execute(alias: str, statement: tuple[str, tuple[Any, ...]]) -> None:
    with connections[alias].cursor() as cursor:
        cursor.execute(*statement)


def _await(awaitable: Any) -> Any:
    from asgiref.sync import async_to_sync

    async def wait() -> Any:
        return await awaitable

    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return async_to_sync(wait)()
    raise RuntimeError("run_outbox() with async handlers must be called from sync code")
