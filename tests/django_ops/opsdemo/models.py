"""A user's models, administered and served with headrace's base classes."""

from django.db import models


class Tenant(models.Model):
    name = models.CharField(max_length=50)

    def __str__(self) -> str:
        return self.name


class Customer(models.Model):
    tenant = models.ForeignKey(Tenant, on_delete=models.CASCADE)
    name = models.CharField(max_length=50)

    def __str__(self) -> str:
        return self.name


class Order(models.Model):
    STATUSES = [("new", "New"), ("shipped", "Shipped"), ("cancelled", "Cancelled")]
    tenant = models.ForeignKey(Tenant, on_delete=models.CASCADE, null=True, blank=True)
    customer = models.ForeignKey(Customer, on_delete=models.SET_NULL, null=True, blank=True)
    reference = models.CharField(max_length=50)
    status = models.CharField(max_length=20, choices=STATUSES, default="new")
    is_active = models.BooleanField(default=True)
    is_locked = models.BooleanField(default=False)
    amount = models.IntegerField(default=0)
    deleted_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        permissions = [("approve_order", "Can approve orders")]

    def __str__(self) -> str:
        return self.reference


class OrderLine(models.Model):
    order = models.ForeignKey(Order, on_delete=models.CASCADE, related_name="lines")
    product = models.CharField(max_length=50)
    quantity = models.IntegerField(default=1)
    created_at = models.DateTimeField(auto_now_add=True)
