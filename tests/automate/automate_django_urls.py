"""URLs of the Django webhook tests."""

from django.contrib import admin
from django.urls import path

from headrace.django.webhooks import WebhookView

urlpatterns = [
    path("hooks/<source>/", WebhookView.as_view(), name="headrace-webhook"),
    path("admin/", admin.site.urls),
]
