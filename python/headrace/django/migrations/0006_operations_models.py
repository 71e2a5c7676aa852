"""Read-only, unmanaged models of the core's tables for the admin and the REST API (#12): no
table changes, only the migration state Django needs for their content types and permissions."""

from django.db import migrations, models

import headrace.django.models


class Migration(migrations.Migration):
    dependencies = [
        ("headrace", "0005_outbox_dedupe_lookup"),
    ]

    operations = [
        migrations.CreateModel(
            name="AppInfo",
            fields=[
                ("app_id", models.TextField(primary_key=True, serialize=False)),
                ("module", models.TextField(blank=True, null=True)),
                ("metadata", headrace.django.models.CoreJSONField()),
            ],
            options={
                "verbose_name": "app info",
                "db_table": "headrace_app_infos",
                "ordering": ("app_id",),
                "managed": False,
                "default_permissions": ("view",),
            },
        ),
        migrations.CreateModel(
            name="Invocation",
            fields=[
                ("seq", models.BigAutoField(primary_key=True, serialize=False)),
                ("invocation_id", models.TextField(unique=True)),
                ("task_id", models.TextField()),
                ("arguments", headrace.django.models.CoreJSONField()),
                ("status", models.TextField()),
                ("workflow_id", models.TextField(blank=True, null=True)),
                ("workflow_type", models.TextField(blank=True, null=True)),
                ("parent_workflow_id", models.TextField(blank=True, null=True)),
                ("parent_invocation_id", models.TextField(blank=True, null=True)),
                ("result", headrace.django.models.CoreJSONField(blank=True, null=True)),
                ("exception", headrace.django.models.CoreJSONField(blank=True, null=True)),
                ("created_at", headrace.django.models.CoreTimeField()),
                ("updated_at", headrace.django.models.CoreTimeField()),
            ],
            options={
                "db_table": "headrace_invocations",
                "ordering": ("-seq",),
                "managed": False,
                "default_permissions": ("view",),
            },
        ),
        migrations.CreateModel(
            name="InvocationHistory",
            fields=[
                ("seq", models.BigAutoField(primary_key=True, serialize=False)),
                ("invocation_id", models.TextField()),
                ("entry_key", models.BigIntegerField()),
                ("timestamp", headrace.django.models.CoreTimeField()),
                ("utc_offset", models.IntegerField(default=0)),
                ("status", models.TextField(blank=True, null=True)),
                ("execution_context", headrace.django.models.CoreJSONField(blank=True, null=True)),
            ],
            options={
                "verbose_name_plural": "invocation history",
                "db_table": "headrace_invocation_history",
                "ordering": ("timestamp", "seq"),
                "managed": False,
                "default_permissions": ("view",),
            },
        ),
        migrations.CreateModel(
            name="OutboxItem",
            fields=[
                ("id", models.BigAutoField(primary_key=True, serialize=False)),
                ("topic", models.TextField()),
                ("payload", models.JSONField()),
                (
                    "status",
                    models.TextField(
                        choices=[
                            ("pending", "Pending"),
                            ("processing", "Processing"),
                            ("completed", "Completed"),
                            ("failed", "Failed"),
                        ],
                        default="pending",
                    ),
                ),
                ("priority", models.IntegerField(default=0)),
                ("attempts", models.IntegerField(default=0)),
                ("max_attempts", models.IntegerField()),
                ("run_at", headrace.django.models.CoreTimeField()),
                ("lease_owner", models.TextField(blank=True, null=True)),
                ("lease_expires_at", headrace.django.models.CoreTimeField(blank=True, null=True)),
                ("last_error", models.TextField(blank=True, null=True)),
                ("dedupe_key", models.TextField(blank=True, null=True)),
                ("trace_id", models.TextField(blank=True, null=True)),
                ("created_at", headrace.django.models.CoreTimeField()),
                ("updated_at", headrace.django.models.CoreTimeField()),
            ],
            options={
                "verbose_name": "outbox item",
                "db_table": "headrace_outbox",
                "ordering": ("-id",),
                "permissions": (
                    ("requeue_outboxitem", "Can requeue outbox items"),
                    ("run_now_outboxitem", "Can run outbox items now"),
                    ("fail_outboxitem", "Can mark outbox items failed"),
                    ("purge_outboxitem", "Can purge outbox items"),
                ),
                "managed": False,
                "default_permissions": ("view",),
            },
        ),
        migrations.CreateModel(
            name="Policy",
            fields=[
                ("key", models.TextField(primary_key=True, serialize=False)),
            ],
            options={
                "verbose_name": "policy",
                "verbose_name_plural": "policies",
                "db_table": "headrace_workflow_values",
                "permissions": (("run_now_policy", "Can run policies now"),),
                "managed": False,
            },
        ),
        migrations.CreateModel(
            name="WorkflowRun",
            fields=[
                ("seq", models.BigAutoField(primary_key=True, serialize=False)),
                ("workflow_id", models.TextField(unique=True)),
                ("workflow_type", models.TextField()),
                ("parent_workflow_id", models.TextField(blank=True, null=True)),
            ],
            options={
                "db_table": "headrace_workflow_runs",
                "ordering": ("-seq",),
                "managed": False,
                "default_permissions": ("view",),
            },
        ),
        migrations.CreateModel(
            name="Worker",
            fields=[],
            options={
                "verbose_name": "worker",
                "proxy": True,
                "default_permissions": ("view",),
                "indexes": [],
                "constraints": [],
            },
            bases=("headrace.appinfo",),
        ),
        migrations.CreateModel(
            name="Bridge",
            fields=[],
            options={
                "verbose_name": "bridge",
                "permissions": (("run_now_bridge", "Can run bridges now"),),
                "proxy": True,
                "default_permissions": ("view",),
                "indexes": [],
                "constraints": [],
            },
            bases=("headrace.outboxitem",),
        ),
    ]
