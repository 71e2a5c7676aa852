"""headrace's REST API on Django REST framework (``pip install headrace[drf]``), built on the
seed's base classes (:mod:`headrace.django.drf_base`): outbox items (list, retrieve, requeue),
invocations and policy runs, with cursor pagination, an optional tenant filter, rate limiting
and an OpenAPI schema. Mounted by ``headrace.django.urls`` under ``api/``."""
