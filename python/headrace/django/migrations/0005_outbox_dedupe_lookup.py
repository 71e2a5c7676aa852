"""Core 0011_outbox_dedupe_lookup (items found by dedupe key in any status)."""

from django.db import migrations

from headrace.django.schema import ApplyCoreSchema


class Migration(migrations.Migration):
    dependencies = [("headrace", "0004_relaxed_commit_pynenc")]
    operations = [ApplyCoreSchema(["0011_outbox_dedupe_lookup"])]
