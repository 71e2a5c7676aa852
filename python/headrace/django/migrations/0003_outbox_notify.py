"""PostgreSQL: the statement-level trigger that wakes workers on any insert (core 0010)."""

from django.db import migrations

from headrace.django.schema import ApplyCoreSchema


class Migration(migrations.Migration):
    dependencies = [("headrace", "0002_claim")]
    operations = [ApplyCoreSchema(["0010_outbox_notify"])]
