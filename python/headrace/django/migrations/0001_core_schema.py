"""The core's outbox and state schema (core versions 0001 and 0002)."""

from django.db import migrations

from headrace.django.schema import ApplyCoreSchema


class Migration(migrations.Migration):
    initial = True
    dependencies = []
    operations = [ApplyCoreSchema(["0001_outbox", "0002_state"])]
