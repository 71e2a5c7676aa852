"""PostgreSQL: the claim function (core 0006)."""

from django.db import migrations

from headrace.django.schema import ApplyCoreSchema


class Migration(migrations.Migration):
    dependencies = [("headrace", "0001_core_schema")]
    operations = [ApplyCoreSchema(["0006_claim"])]
