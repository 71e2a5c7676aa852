"""headrace's URLs: ``path("headrace/", include("headrace.django.urls"))``.

* ``health/`` — the health view (200/503 JSON).
* ``api/v1/policies``, ``api/v1/policies/<name>``, ``api/v1/status``, ``api/v1/capabilities`` —
  orb-worker's policy API (same codes and bodies as ``headrace-orb-worker``), writing durable
  policies; ``api/v1/runs`` and ``api/v1/policies/<name>/runs`` read runs. Staff only.
* ``api/`` — the REST API on Django REST framework (outbox items, runs, invocations) and its
  OpenAPI schema at ``api/schema/``, when ``rest_framework`` is installed.
"""

from __future__ import annotations

from typing import Any

from django.apps import apps
from django.urls import include, path, re_path

from headrace.django import policy_api, views

app_name = "headrace"

urlpatterns: list[Any] = [
    path("health/", views.health, name="health"),
    re_path(r"^api/v1/(?P<route>.*)$", policy_api.orb_api, name="orb-api"),
]

if apps.is_installed("rest_framework"):
    urlpatterns.append(path("api/", include("headrace.django.api.urls")))
