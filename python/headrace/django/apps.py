"""The Django app: ``INSTALLED_APPS = [..., "headrace.django"]`` (label ``headrace``)."""

from __future__ import annotations

from django.apps import AppConfig


class HeadraceConfig(AppConfig):
    name = "headrace.django"
    label = "headrace"
    verbose_name = "headrace"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        # Nothing connects here: Django builds apps in every process (manage.py, gunicorn
        # --preload before fork), and a store opened now would be shared across forks.
        from headrace.django import checks, conf, outbox

        checks.register()
        conf.connect_setting_changed()
        outbox.track_atomic_order()
