"""The read-only ``OutboxItem`` model over the core's table: its time columns are integer
microseconds on SQLite and timestamps on PostgreSQL, and both read back as aware datetimes."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from django.db.models import Max, Min
from django.test import TestCase

import headrace.django as hr
from headrace.django.models import CoreTimeField, OutboxItem
from headrace.django.testing import outbox_items


class CoreTimeFieldTest(TestCase):
    def test_items_read_back_with_the_times_the_core_wrote(self) -> None:
        run_at = datetime(2031, 5, 6, 7, 8, 9, 123456, tzinfo=timezone.utc)
        item_id = hr.enqueue("model.read", {"n": 1}, run_at=run_at)
        later_id = hr.enqueue("model.read", {"n": 2}, run_at=run_at + timedelta(hours=1))
        (core,) = [i for i in outbox_items(topic="model.read") if i.id == item_id]
        row = OutboxItem.objects.get(pk=item_id)
        assert row.run_at == run_at  # microseconds survive the integer column on SQLite
        assert row.created_at == core.created_at and row.created_at.tzinfo is not None
        assert row.lease_expires_at is None
        assert list(OutboxItem.objects.filter(topic="model.read").order_by("run_at").values_list("id", flat=True)) == [
            item_id,
            later_id,
        ]
        assert OutboxItem.objects.filter(run_at__lt=run_at + timedelta(minutes=1)).get().pk == item_id
        assert OutboxItem.objects.filter(run_at__gte=run_at + timedelta(minutes=1)).get().pk == later_id
        bounds = OutboxItem.objects.aggregate(first=Min("run_at"), last=Max("run_at"))
        assert bounds == {"first": run_at, "last": run_at + timedelta(hours=1)}
        assert list(OutboxItem.objects.filter(pk=item_id).values_list("run_at", flat=True)) == [run_at]
        from django.db import connection

        if connection.vendor == "postgresql":  # date transforms work on timestamptz columns
            assert OutboxItem.objects.filter(topic="model.read", run_at__year=2031).count() == 2
            assert OutboxItem.objects.filter(topic="model.read", run_at__date=run_at.date()).count() == 2

    def test_no_backend_converter_sees_the_stored_value(self) -> None:
        # Django picks backend converters by internal type; SQLite's datetime converter parses
        # text and raised TypeError on the stored integer.
        from django.db import connection

        field = OutboxItem._meta.get_field("run_at")
        assert isinstance(field, CoreTimeField)
        assert field.get_internal_type() == "CoreTimeField"
        assert connection.ops.get_db_converters(OutboxItem.objects.all().query.resolve_ref("run_at")) == []
        expected = "integer" if connection.vendor == "sqlite" else "timestamp with time zone"
        assert field.db_type(connection) == expected
