"""headrace.django.enqueue on Django's connection: atomicity with the caller's writes."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
from asgiref.sync import async_to_sync
from django.db import connection, transaction
from django.test import AsyncClient, Client, TestCase, TransactionTestCase, override_settings
from shop.models import Order

import headrace.django as hr
from headrace.django.testing import assert_enqueued, outbox_items
from headrace.errors import ConfigError


class EnqueueInTestCase(TestCase):
    def test_the_item_is_visible_to_the_same_transaction_with_core_defaults(self) -> None:
        item_id = hr.enqueue("mail.send", {"to": "a@example.com", "n": [1, 2]}, priority=5, trace_id="t-1")
        (item,) = assert_enqueued("mail.send", {"to": "a@example.com", "n": [1, 2]}, count=1)
        assert item.id == item_id
        assert (item.priority, item.trace_id, item.attempts, item.status) == (5, "t-1", 0, "pending")
        assert item.max_attempts == 5  # RetryPolicy's default, resolved by the core

    def test_savepoint_rollback_drops_only_the_inner_item(self) -> None:
        with transaction.atomic():
            kept = hr.enqueue("t", {"n": 1})
            try:
                with transaction.atomic():
                    hr.enqueue("t", {"n": 2})
                    raise RuntimeError("inner")
            except RuntimeError:
                pass
        assert [i.id for i in outbox_items(topic="t")] == [kept]

    def test_a_duplicate_dedupe_key_returns_the_live_id_and_leaves_the_transaction_usable(self) -> None:
        with transaction.atomic():
            first = hr.enqueue("t", {"n": 1}, dedupe_key="welcome-42")
            again = hr.enqueue("t", {"n": 2}, dedupe_key="welcome-42")
            Order.objects.create(number="after-duplicate")  # would fail in an aborted PG transaction
        assert again == first
        assert_enqueued("t", {"n": 1}, count=1)
        assert Order.objects.filter(number="after-duplicate").exists()

    def test_enqueue_many_returns_ids_in_order_and_writes_nothing_when_one_item_is_bad(self) -> None:
        ids = hr.enqueue_many([{"topic": "a", "payload": 1}, {"topic": "b", "payload": 2, "dedupe_key": "k"}])
        assert [i.id for i in outbox_items()] == ids
        with pytest.raises(ConfigError, match='unknown key "bogus"'):
            hr.enqueue_many([{"topic": "c", "payload": 1}, {"topic": "c", "payload": 1, "bogus": 1}])
        assert outbox_items(topic="c") == []

    def test_the_core_rejects_bad_input_naming_the_value_and_writes_nothing(self) -> None:
        with pytest.raises(ConfigError, match="max_payload_bytes"):
            hr.enqueue("big", {"blob": "x" * (1024 * 1024 + 1)})
        with pytest.raises(ConfigError, match="topic"):
            hr.enqueue("  ", {})
        with pytest.raises(ConfigError, match="payload"):
            hr.enqueue("t", {"not json": {1, 2}})
        with pytest.raises(ConfigError, match="max_attempts"):
            hr.enqueue("t", {}, max_attempts=0)
        assert outbox_items() == []

    def test_run_at_and_delay_come_from_the_core(self) -> None:
        at = datetime(2030, 1, 2, 3, 4, 5, 600000, tzinfo=timezone.utc)
        hr.enqueue("later", {}, run_at=at)
        before = datetime.now(timezone.utc)
        hr.enqueue("delayed", {}, delay_seconds=3600)
        assert outbox_items(topic="later")[0].run_at == at
        delayed = outbox_items(topic="delayed")[0].run_at
        assert before + timedelta(seconds=3599) < delayed < before + timedelta(seconds=3700)

    @override_settings(HEADRACE={"REQUIRE_TRANSACTION": True})
    def test_require_transaction_accepts_an_atomic_block(self) -> None:
        with transaction.atomic():
            assert hr.enqueue("t", {}) is not None

    def test_using_an_unknown_alias_is_named(self) -> None:
        with pytest.raises(ConfigError, match="'nope' is not in DATABASES"):
            hr.enqueue("t", {}, using="nope")

    def test_on_commit_enqueues_only_after_commit(self) -> None:
        with self.captureOnCommitCallbacks(execute=True) as callbacks:
            assert hr.enqueue("after", {"n": 1}, on_commit=True) is None
            assert outbox_items(topic="after") == []
        assert len(callbacks) == 1
        assert_enqueued("after", {"n": 1}, count=1)


class EnqueueCommitsWithTheCaller(TransactionTestCase):
    def tearDown(self) -> None:
        with connection.cursor() as cursor:
            cursor.execute("DELETE FROM headrace_outbox")

    def test_commit_keeps_both_and_rollback_drops_both(self) -> None:
        with transaction.atomic():
            Order.objects.create(number="kept")
            kept = hr.enqueue("shop.order_placed", {"n": "kept"})
        with pytest.raises(RuntimeError), transaction.atomic():
            Order.objects.create(number="dropped")
            hr.enqueue("shop.order_placed", {"n": "dropped"})
            raise RuntimeError("rollback")
        assert list(Order.objects.values_list("number", flat=True)) == ["kept"]
        assert [i.id for i in outbox_items()] == [kept]

    @override_settings(HEADRACE={"REQUIRE_TRANSACTION": True})
    def test_require_transaction_outside_atomic_raises(self) -> None:
        with pytest.raises(ConfigError, match="REQUIRE_TRANSACTION"):
            hr.enqueue("t", {})
        assert outbox_items() == []

    def test_atomic_requests_commit_and_roll_back_with_the_view(self) -> None:
        connection.settings_dict["ATOMIC_REQUESTS"] = True
        try:
            client = Client(raise_request_exception=False)
            ok = client.get("/orders/", {"number": "R-1"})
            assert ok.status_code == 200
            failed = client.get("/orders/", {"number": "R-2", "fail": "1"})
            assert failed.status_code == 500
        finally:
            connection.settings_dict["ATOMIC_REQUESTS"] = False
        assert list(Order.objects.values_list("number", flat=True)) == ["R-1"]
        (item,) = outbox_items()
        assert item.id == ok.json()["item"]
        assert item.payload == {"order_id": ok.json()["order"]}

    def test_async_view_enqueues_in_its_transaction(self) -> None:
        client = AsyncClient()
        ok = async_to_sync(client.get)("/orders-async/", {"number": "A-1"})
        failed = async_to_sync(client.get)("/orders-async/", {"number": "A-2", "fail": "1"})
        assert ok.status_code == 200 and failed.status_code == 500
        assert list(Order.objects.values_list("number", flat=True)) == ["A-1"]
        assert [i.payload for i in outbox_items()] == [{"order_id": ok.json()["order"]}]

    def test_aenqueue_joins_the_transaction_of_the_sync_thread(self) -> None:
        def place() -> None:
            with transaction.atomic():
                Order.objects.create(number="X")
                async_to_sync(hr.aenqueue)("t", {"n": 1})
                raise RuntimeError("rollback")

        with pytest.raises(RuntimeError):
            place()
        assert outbox_items() == []


def test_enqueue_before_the_app_registry_is_ready_is_actionable(monkeypatch: Any) -> None:
    from django.apps import apps

    monkeypatch.setattr(apps, "ready", False)
    with pytest.raises(ConfigError, match="before Django's app registry is ready"):
        hr.enqueue("t", {})


class EnqueueManyInOneStatement(TestCase):
    def test_a_batch_is_one_statement_whatever_its_size(self) -> None:
        from django.test.utils import CaptureQueriesContext

        with CaptureQueriesContext(connection) as queries:
            ids = hr.enqueue_many([{"topic": "bulk", "payload": {"n": n}, "priority": n % 3} for n in range(250)])
        inserts = [q for q in queries.captured_queries if "INSERT" in q["sql"].upper()]
        assert len(inserts) == 1, [q["sql"][:80] for q in queries.captured_queries]
        items = outbox_items(topic="bulk")
        assert [i.id for i in items] == ids and ids == sorted(ids)
        assert [(i.payload, i.priority) for i in items] == [({"n": n}, n % 3) for n in range(250)]

    def test_dedupe_keys_within_the_batch_and_held_before_it_return_the_live_ids(self) -> None:
        held = hr.enqueue("bulk", {"n": "held"}, dedupe_key="held")
        ids = hr.enqueue_many(
            [
                {"topic": "bulk", "payload": 1},
                {"topic": "bulk", "payload": 2, "dedupe_key": "k"},
                {"topic": "bulk", "payload": 3, "dedupe_key": "held"},
                {"topic": "bulk", "payload": 4, "dedupe_key": "k"},
                {"topic": "bulk", "payload": 5, "trace_id": "tr", "max_attempts": 2},
            ]
        )
        assert ids[2] == held and ids[3] == ids[1]
        assert len({ids[0], ids[1], ids[4], held}) == 4
        Order.objects.create(number="after-batch")  # the PostgreSQL transaction is not aborted
        by_id = {i.id: i for i in outbox_items(topic="bulk")}
        assert len(by_id) == 4
        assert by_id[ids[1]].payload == 2 and by_id[held].payload == {"n": "held"}
        assert (by_id[ids[4]].trace_id, by_id[ids[4]].max_attempts) == ("tr", 2)

    def test_an_empty_batch_writes_nothing(self) -> None:
        assert hr.enqueue_many([]) == []


class InnermostAtomicBlockChoosesTheDatabase(TestCase):
    databases = frozenset({"default", "second"})

    def test_the_block_entered_last_wins_on_whichever_alias(self) -> None:
        from django.db import connections

        from headrace.django.outbox import resolve_alias

        assert resolve_alias() == "default"  # only the TestCase's own blocks are open
        with transaction.atomic(using="second"):
            assert resolve_alias() == "second"
            item_id = hr.enqueue("inner", {"db": "second"})
            with transaction.atomic(using="default"):
                assert resolve_alias() == "default"
                with transaction.atomic(using="second"):
                    assert resolve_alias() == "second"
            assert resolve_alias() == "second"
        with transaction.atomic(using="default"), transaction.atomic(using="second"):
            assert resolve_alias() == "second"
        with transaction.atomic(using="second"), transaction.atomic(using="default"):
            assert resolve_alias() == "default"
        assert resolve_alias(using="second") == "second"
        # The item joined the transaction on "second" (its own id sequence), not the default one.
        assert [i.id for i in outbox_items(using="second")] == [item_id]
        assert outbox_items(topic="inner", using="default") == []
        assert connections["second"].vendor == "sqlite"

    def test_an_item_rolls_back_with_the_innermost_blocks_database(self) -> None:
        with transaction.atomic(using="default"):
            try:
                with transaction.atomic(using="second"):
                    hr.enqueue("inner", {"n": 1})
                    raise RuntimeError("roll back other")
            except RuntimeError:
                pass
            kept = hr.enqueue("inner", {"n": 2})
        assert outbox_items(topic="inner", using="second") == []
        assert [i.id for i in outbox_items(topic="inner", using="default")] == [kept]
