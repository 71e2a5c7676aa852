"""Core 0006_relaxed_commit and 0007_pynenc (the pynenc state store)."""

from django.db import migrations

from headrace.django.schema import ApplyCoreSchema


class Migration(migrations.Migration):
    dependencies = [("headrace", "0003_outbox_notify")]
    operations = [ApplyCoreSchema(["0006_relaxed_commit", "0007_pynenc"])]
