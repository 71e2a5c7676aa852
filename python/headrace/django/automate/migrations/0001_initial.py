"""Workflow definitions edited in the admin."""

from typing import ClassVar

from django.db import migrations, models


class Migration(migrations.Migration):
    initial = True

    dependencies: ClassVar[list[tuple[str, str]]] = []

    operations = [
        migrations.CreateModel(
            name="WorkflowDefinition",
            fields=[
                ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                ("key", models.SlugField(help_text="The workflow's stable key.", max_length=200, unique=True)),
                ("name", models.CharField(blank=True, max_length=200)),
                ("active", models.BooleanField(default=True, help_text="Inactive workflows start no runs.")),
                ("version", models.PositiveIntegerField(default=1, editable=False)),
                (
                    "trigger_source",
                    models.CharField(default="*", help_text="Glob pattern, e.g. shop or *.", max_length=200),
                ),
                (
                    "trigger_event_type",
                    models.CharField(default="*", help_text="Glob pattern, e.g. order.*", max_length=200),
                ),
                (
                    "conditions",
                    models.JSONField(
                        blank=True,
                        help_text='JsonLogic over event and context, e.g. {">": [{"var": "event.payload.total"}, 0]}',
                        null=True,
                    ),
                ),
                (
                    "steps",
                    models.JSONField(
                        blank=True,
                        default=list,
                        help_text='[{"id": "notify", "connector": "slack", "action": "post", '
                        '"input": {"text": "{{ event.type }}"}}]',
                    ),
                ),
                ("created_at", models.DateTimeField(auto_now_add=True)),
                ("updated_at", models.DateTimeField(auto_now=True)),
            ],
            options={"verbose_name": "workflow", "ordering": ("key",)},
        ),
    ]
