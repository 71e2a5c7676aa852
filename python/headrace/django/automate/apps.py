"""The app of admin-defined workflows (label ``headrace_automate``)."""

from __future__ import annotations

from django.apps import AppConfig


class AutomateConfig(AppConfig):
    name = "headrace.django.automate"
    label = "headrace_automate"
    verbose_name = "headrace workflows"
    default_auto_field = "django.db.models.BigAutoField"
