"""HeadraceTaskBackend: the Django Tasks interface with retries and dead-letter."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
from asgiref.sync import async_to_sync
from django.db import transaction
from django.test import TestCase
from shop import tasks
from shop.models import Order

from headrace.django.tasks import (
    STATUS,
    HeadraceTaskBackend,
    InvalidTask,
    task_backends,
)
from headrace.django.testing import assert_enqueued, outbox_items, run_outbox

try:
    from django.tasks import TaskResultStatus
    from django.tasks.exceptions import TaskResultDoesNotExist
    from django.tasks.signals import task_enqueued, task_finished, task_started
except ImportError:
    from django_tasks import TaskResultStatus  # type: ignore[no-redef]
    from django_tasks.exceptions import TaskResultDoesNotExist  # type: ignore[no-redef]
    from django_tasks.signals import task_enqueued, task_finished, task_started  # type: ignore[no-redef]

LATER = timedelta(hours=2)


def drain_all() -> Any:
    return run_outbox(due_by=datetime.now(timezone.utc) + LATER)


class TasksBackend(TestCase):
    def setUp(self) -> None:
        tasks.calls.clear()

    def test_capability_flags(self) -> None:
        backend = task_backends["default"]
        assert isinstance(backend, HeadraceTaskBackend)
        assert backend.supports_defer and backend.supports_priority
        assert backend.supports_async_task and backend.supports_get_result

    def test_enqueue_is_an_outbox_item_in_the_callers_transaction(self) -> None:
        with transaction.atomic():
            result = tasks.mark_notified.enqueue(7)
        assert result.status == TaskResultStatus.READY
        (item,) = assert_enqueued("tasks.mail", count=1)
        assert str(item.id) == result.id and item.priority == 10
        assert item.payload["task"] == "shop.tasks.mark_notified"
        try:
            with transaction.atomic():
                tasks.add.enqueue(1, 2)
                raise RuntimeError("rollback")
        except RuntimeError:
            pass
        assert outbox_items(topic="tasks.default") == []

    def test_get_result_and_refresh_follow_the_item(self) -> None:
        order = Order.objects.create(number="T")
        result = tasks.mark_notified.enqueue(order.pk)
        fetched = tasks.mark_notified.get_result(result.id)
        assert fetched.status == TaskResultStatus.READY and fetched.args == [order.pk]
        assert run_outbox().completed == 1
        result.refresh()
        assert result.status == TaskResultStatus.SUCCESSFUL
        assert result.return_value == {"order": order.pk, "tuple": [1, 2]}
        assert result.attempts == 1 and len(result.worker_ids) == 1
        assert result.finished_at is not None and result.started_at is not None
        order.refresh_from_db()
        assert order.notified

    def test_unknown_results_raise_does_not_exist(self) -> None:
        with pytest.raises(TaskResultDoesNotExist):
            task_backends["default"].get_result("999999")
        with pytest.raises(TaskResultDoesNotExist):
            task_backends["default"].get_result("not-a-number")

    def test_signals_are_sent_for_enqueue_start_and_finish(self) -> None:
        seen: list[tuple[str, str]] = []

        def receiver(name: str) -> Any:
            def record(sender: Any, task_result: Any, **kwargs: Any) -> None:
                seen.append((name, str(task_result.status)))

            return record

        receivers = [
            (sig, receiver(name))
            for sig, name in ((task_enqueued, "enqueued"), (task_started, "started"), (task_finished, "finished"))
        ]
        for sig, rec in receivers:
            sig.connect(rec)
        try:
            tasks.add.enqueue(2, 3)
            run_outbox()
        finally:
            for sig, rec in receivers:
                sig.disconnect(rec)
        assert seen == [("enqueued", "READY"), ("started", "RUNNING"), ("finished", "SUCCESSFUL")]

    def test_validation_errors(self) -> None:
        with pytest.raises(InvalidTask, match="Queue 'nope'"):
            tasks.add.using(queue_name="nope")
        with pytest.raises(InvalidTask, match="priority"):
            tasks.add.using(priority=1000)
        with pytest.raises(InvalidTask, match="aware"):
            tasks.add.using(run_after=datetime(2030, 1, 1))

    def test_defer_sets_run_at(self) -> None:
        at = datetime.now(timezone.utc) + timedelta(hours=1)
        result = tasks.add.using(run_after=at).enqueue(1, 1)
        (item,) = outbox_items(topic="tasks.default")
        assert abs((item.run_at - at).total_seconds()) < 0.001
        assert run_outbox().processed == 0
        assert drain_all().completed == 1
        result.refresh()
        assert result.return_value == 2

    def test_retries_go_back_to_ready_and_errors_grow_per_attempt(self) -> None:
        result = tasks.flaky.enqueue(3)
        assert run_outbox().retried == 1
        result.refresh()
        assert result.status == TaskResultStatus.READY
        assert [e.exception_class_path for e in result.errors] == ["builtins.ValueError"]
        assert "attempt 1 fails" in result.errors[0].traceback
        assert drain_all().completed == 1
        result.refresh()
        assert result.status == TaskResultStatus.SUCCESSFUL and result.return_value == "done"
        assert len(result.errors) == 2 and result.attempts == 3

    def test_exhausted_retries_dead_letter_as_failed(self) -> None:
        finished: list[str] = []

        def on_finished(sender: Any, task_result: Any, **kwargs: Any) -> None:
            finished.append(str(task_result.status))

        task_finished.connect(on_finished)
        try:
            result = tasks.always_fails.enqueue()
            drain_all()
        finally:
            task_finished.disconnect(on_finished)
        result.refresh()
        assert result.status == TaskResultStatus.FAILED
        assert [e.exception_class_path for e in result.errors] == ["builtins.KeyError"] * 2
        assert finished == ["FAILED"]  # once, on the last attempt
        assert outbox_items(topic="tasks.default")[0].status == "failed"
        with pytest.raises(ValueError):
            _ = result.return_value

    def test_without_retry_options_a_task_runs_once_like_djangos_backends(self) -> None:
        result = tasks.no_retry_by_default.enqueue()
        assert run_outbox().failed == 1
        result.refresh()
        assert result.status == TaskResultStatus.FAILED and result.attempts == 1

    def test_context_attempt_is_the_real_attempt(self) -> None:
        result = tasks.attempts_seen.enqueue()
        drain_all()
        result.refresh()
        assert result.return_value == 2

    def test_async_tasks_and_aenqueue(self) -> None:
        result = async_to_sync(tasks.async_add.aenqueue)(2, 5)
        assert run_outbox().completed == 1
        fetched = async_to_sync(tasks.async_add.aget_result)(result.id)
        assert fetched.return_value == 7

    def test_status_mapping(self) -> None:
        assert STATUS == {
            "pending": TaskResultStatus.READY,
            "processing": TaskResultStatus.RUNNING,
            "completed": TaskResultStatus.SUCCESSFUL,
            "failed": TaskResultStatus.FAILED,
        }
