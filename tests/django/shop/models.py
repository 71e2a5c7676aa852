from django.db import models


class Order(models.Model):
    number = models.CharField(max_length=32)
    total = models.IntegerField(default=0)
    notified = models.BooleanField(default=False)

    class Meta:
        app_label = "shop"


class Note(models.Model):
    """A row comparable to an outbox item, for the enqueue benchmark."""

    topic = models.TextField()
    payload = models.JSONField()
    priority = models.IntegerField(default=0)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        app_label = "shop"
