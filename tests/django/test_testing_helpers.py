"""headrace.django.testing inside a plain TestCase (on SQLite: Django's in-memory database)."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
from django.db import connection, transaction
from django.test import TestCase
from shop.models import Order

import headrace.django as hr
from headrace.django.testing import ANY, assert_enqueued, capture_outbox, outbox_items, run_outbox
from headrace.errors import IngestRejected


class HelpersInTestCase(TestCase):
    def test_run_outbox_dispatches_uncommitted_rows_through_djangos_connection(self) -> None:
        with transaction.atomic():
            order = Order.objects.create(number="T-1")
            hr.enqueue("shop.order_placed", {"order_id": order.pk})
        report = run_outbox()
        assert (report.processed, report.completed) == (1, 1)
        order.refresh_from_db()
        assert order.notified
        assert_enqueued("shop.order_placed", status="completed", count=1)
        assert_enqueued("shop.order_placed", count=0)

    def test_memory_sqlite_or_postgres(self) -> None:
        # On SQLite this suite runs on Django's in-memory test database, which no other
        # connection can open: run_outbox works there all the same.
        if connection.vendor == "sqlite":
            assert connection.is_in_memory_db() or connection.settings_dict["TEST"].get("NAME")
        hr.enqueue("x", {"n": 1})
        assert run_outbox({"x": lambda item: None}).completed == 1

    def test_failures_retry_with_the_core_backoff_then_dead_letter(self) -> None:
        seen: list[int] = []

        def failing(item: Any) -> None:
            seen.append(item.attempts)
            raise RuntimeError(f"attempt {item.attempts}")

        hr.enqueue("fails", {}, max_attempts=3)
        first = run_outbox({"fails": failing})
        assert (first.retried, first.failed) == (1, 0)
        (item,) = outbox_items(topic="fails")
        assert item.status == "pending" and item.run_at > item.created_at
        assert item.last_error == "RuntimeError: attempt 1"
        later = datetime.now(timezone.utc) + timedelta(hours=2)
        rest = run_outbox({"fails": failing}, due_by=later)
        assert (rest.retried, rest.failed) == (1, 1)
        assert seen == [1, 2, 3]
        assert outbox_items(topic="fails")[0].status == "failed"

    def test_a_non_retryable_error_dead_letters_at_once(self) -> None:
        def reject(item: Any) -> None:
            raise IngestRejected("no recipient")

        hr.enqueue("rejects", {}, max_attempts=5)
        report = run_outbox({"rejects": reject})
        assert report.failed == 1
        (item,) = outbox_items(topic="rejects")
        assert (item.status, item.attempts) == ("failed", 1)

    def test_an_unhandled_topic_is_dead_lettered_with_a_reason(self) -> None:
        hr.enqueue("nobody.listens", {})
        report = run_outbox()
        assert report.failed == 1
        assert "no handler for topic 'nobody.listens'" in outbox_items()[0].last_error

    def test_async_handlers_run_on_the_test_connection(self) -> None:
        order = Order.objects.create(number="T-2")
        hr.enqueue("async.placed", {"order_id": order.pk})
        from shop.handlers import async_order_placed

        assert run_outbox({"async.placed": async_order_placed}).completed == 1
        order.refresh_from_db()
        assert order.notified

    def test_capture_outbox_records_each_enqueue(self) -> None:
        with capture_outbox() as captured:
            first = hr.enqueue("a", {"n": 1}, priority=3)
            hr.enqueue_many([{"topic": "b", "payload": [1]}])
        assert (captured[0].topic, captured[0].payload, captured[0].id) == ("a", {"n": 1}, first)
        assert captured[0].options["priority"] == 3
        assert [c.topic for c in captured] == ["a", "b"]

    def test_assert_enqueued_explains_what_it_found(self) -> None:
        hr.enqueue("a", {"n": 1})
        assert_enqueued("a", ANY)
        with pytest.raises(AssertionError, match=r"expected 2 item\(s\) on topic 'a'.*found 1.*\{\"n\": 1\}"):
            assert_enqueued("a", {"n": 1}, count=2)
        with pytest.raises(AssertionError, match="with payload"):
            assert_enqueued("a", {"n": 2})


def test_pytest_fixtures_capture_and_run(headrace_outbox: list[Any], run_outbox: Any) -> None:
    hr.enqueue("fixture.topic", {"n": 1})
    assert [c.topic for c in headrace_outbox] == ["fixture.topic"]
    assert run_outbox({"fixture.topic": lambda item: None}).completed == 1
