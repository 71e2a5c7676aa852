from django.contrib import admin
from django.urls import include, path
from opsdemo.admin import audit_site, base_site, io_site, mixins_site, soft_site, tenant_site

urlpatterns = [
    path("admin/", admin.site.urls),
    path("base-admin/", base_site.urls),
    path("tenant-admin/", tenant_site.urls),
    path("audit-admin/", audit_site.urls),
    path("io-admin/", io_site.urls),
    path("soft-admin/", soft_site.urls),
    path("mixins-admin/", mixins_site.urls),
    path("demo-api/", include("opsdemo.api")),
    path("headrace/", include("headrace.django.urls")),
]
