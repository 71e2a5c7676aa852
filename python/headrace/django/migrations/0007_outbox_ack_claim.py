"""PostgreSQL: core 0012_outbox_ack_claim (acknowledge a batch and claim the next in one call)."""

from django.db import migrations

from headrace.django.schema import ApplyCoreSchema


class Migration(migrations.Migration):
    dependencies = [("headrace", "0006_operations_models")]
    operations = [ApplyCoreSchema(["0012_outbox_ack_claim"])]
