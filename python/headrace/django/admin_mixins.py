"""Admin mixins (the seed's ``ExportMixin``, ``BulkActionsMixin``, ``AuditMixin``, ``SearchMixin``,
``FilterMixin``, ``PermissionMixin``) and the helpers the base classes share.

Each mixin goes before ``admin.ModelAdmin`` (or a headrace base class) in the bases and calls
``super()``, so they combine in any order. Actions a mixin adds are filtered by their own
permission check, like Django's built-in ones.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import shlex
from collections.abc import Iterable, Iterator, Sequence
from datetime import date, datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Any
from uuid import UUID

from django.contrib import admin, messages
from django.contrib.admin.models import CHANGE, LogEntry
from django.contrib.contenttypes.models import ContentType
from django.db import models
from django.db.models import Q, QuerySet
from django.http import HttpRequest, HttpResponse
from django.utils import timezone
from django.utils.html import format_html
from django.utils.text import slugify

__all__ = [
    "TIMESTAMP_FIELDS",
    "AuditMixin",
    "BulkActionsMixin",
    "ExportMixin",
    "FilterMixin",
    "PermissionMixin",
    "SearchMixin",
    "pretty_json",
    "truncate",
]

log = logging.getLogger("headrace.audit")

#: Field names the base classes treat as timestamps: read-only, listed last.
TIMESTAMP_FIELDS: tuple[str, ...] = ("created_at", "updated_at", "created", "modified")

if TYPE_CHECKING:
    _AdminBase = admin.ModelAdmin[Any]
else:
    _AdminBase = object


def truncate(text: str, limit: int = 200) -> str:
    """``text`` cut to ``limit`` characters, with an ellipsis when cut."""
    if limit < 1:
        raise ValueError(f"truncate limit must be >= 1, got {limit}")
    return text if len(text) <= limit else text[: limit - 1] + "…"


def pretty_json(value: Any, limit: int = 2000) -> str:
    """``value`` (a JSON string or a JSON-able object) as indented JSON in a ``<pre>``, truncated."""
    if isinstance(value, (str, bytes)):
        try:
            value = json.loads(value)
        except ValueError:
            return format_html("<pre>{}</pre>", truncate(str(value), limit))
    text = json.dumps(value, indent=2, sort_keys=True, ensure_ascii=False, default=str)
    return format_html('<pre class="headrace-json">{}</pre>', truncate(text, limit))


def _plain(value: Any) -> Any:
    """A field value as something CSV and JSON both write faithfully."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, (datetime, date)):
        return value.isoformat()
    if isinstance(value, (Decimal, UUID)):
        return str(value)
    if isinstance(value, models.Model):
        return value.pk
    if isinstance(value, (dict, list)):
        return value
    return str(value)


class ExportMixin(_AdminBase):
    """Adds "Export selected as CSV" and "… as JSON" actions.

    ``export_fields`` (default: every concrete field) names the columns; a foreign key exports its
    primary key. Exporting needs the view permission (override ``has_export_permission``).
    """

    export_fields: Sequence[str] | None = None
    export_formats: Sequence[str] = ("csv", "json")

    def get_export_fields(self, request: HttpRequest) -> list[str]:
        if self.export_fields is not None:
            return list(self.export_fields)
        return [field.attname for field in self.model._meta.concrete_fields]

    def has_export_permission(self, request: HttpRequest) -> bool:
        return self.has_view_permission(request)

    def iter_export_rows(self, request: HttpRequest, queryset: QuerySet[Any]) -> Iterator[dict[str, Any]]:
        fields = self.get_export_fields(request)
        for obj in queryset.iterator(chunk_size=2000):
            yield {name: _plain(getattr(obj, name)) for name in fields}

    def _export_filename(self, extension: str) -> str:
        stamp = timezone.now().strftime("%Y%m%d-%H%M%S")
        return f"{slugify(self.model._meta.verbose_name_plural)}-{stamp}.{extension}"

    @admin.action(description="Export selected as CSV")
    def export_as_csv(self, request: HttpRequest, queryset: QuerySet[Any]) -> HttpResponse:
        fields = self.get_export_fields(request)
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=fields)
        writer.writeheader()
        for row in self.iter_export_rows(request, queryset):
            writer.writerow({k: json.dumps(v) if isinstance(v, (dict, list)) else v for k, v in row.items()})
        response = HttpResponse(buffer.getvalue(), content_type="text/csv; charset=utf-8")
        response["Content-Disposition"] = f'attachment; filename="{self._export_filename("csv")}"'
        return response

    @admin.action(description="Export selected as JSON")
    def export_as_json(self, request: HttpRequest, queryset: QuerySet[Any]) -> HttpResponse:
        rows = list(self.iter_export_rows(request, queryset))
        response = HttpResponse(
            json.dumps(rows, indent=2, ensure_ascii=False), content_type="application/json; charset=utf-8"
        )
        response["Content-Disposition"] = f'attachment; filename="{self._export_filename("json")}"'
        return response

    def get_actions(self, request: HttpRequest, *args: Any, **kwargs: Any) -> dict[str, Any]:
        actions: dict[str, Any] = super().get_actions(request, *args, **kwargs)
        if self.actions is None or not self.has_export_permission(request):
            return actions
        for fmt in self.export_formats:
            if fmt not in ("csv", "json"):
                raise ValueError(f"{type(self).__name__}.export_formats: unknown format {fmt!r} (use 'csv' or 'json')")
            action = self.get_action(f"export_as_{fmt}")
            if action is not None:
                actions[f"export_as_{fmt}"] = action
        return actions


class AuditMixin(_AdminBase):
    """Logs every change with its field-level before/after values.

    Entries land in Django's admin log (``LogEntry``, shown in each object's history) and on the
    ``headrace.audit`` logger. Bulk actions call :meth:`audit` for each object they touch.
    """

    audit_exclude_fields: Sequence[str] = ("password",)

    def _field_values(self, obj: models.Model) -> dict[str, Any]:
        return {
            field.attname: _plain(getattr(obj, field.attname))
            for field in obj._meta.concrete_fields
            if field.attname not in self.audit_exclude_fields
        }

    def get_object(self, request: HttpRequest, object_id: str, from_field: str | None = None) -> Any:
        obj = super().get_object(request, object_id, from_field)
        if obj is not None:
            obj._headrace_audit_before = self._field_values(obj)
        return obj

    def audit(
        self, request: HttpRequest, obj: models.Model, message: str, changes: dict[str, Any] | None = None
    ) -> None:
        """Records ``message`` (and ``changes``: field → [before, after]) for ``obj``."""
        body = [{"headrace": {"message": message, "changes": changes or {}}}]
        LogEntry.objects.create(
            user_id=request.user.pk,
            content_type_id=ContentType.objects.get_for_model(obj, for_concrete_model=False).pk,
            object_id=str(obj.pk),
            object_repr=truncate(str(obj), 200),
            action_flag=CHANGE,
            change_message=json.dumps(body, default=str),
        )
        log.info(
            "%s %s %s: %s %s",
            request.user,
            obj._meta.label,
            obj.pk,
            message,
            json.dumps(changes or {}, default=str),
        )

    def save_model(self, request: HttpRequest, obj: Any, form: Any, change: bool) -> None:
        super().save_model(request, obj, form, change)
        before: dict[str, Any] = getattr(obj, "_headrace_audit_before", {}) if change else {}
        after = self._field_values(obj)
        changes = {k: [before.get(k), v] for k, v in after.items() if before.get(k) != v}
        self.audit(request, obj, "changed" if change else "created", changes)

    def delete_model(self, request: HttpRequest, obj: Any) -> None:
        self.audit(request, obj, "deleted", {k: [v, None] for k, v in self._field_values(obj).items()})
        super().delete_model(request, obj)

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> None:
        for obj in queryset:
            self.audit(request, obj, "deleted", {k: [v, None] for k, v in self._field_values(obj).items()})
        super().delete_queryset(request, queryset)


class BulkActionsMixin(_AdminBase):
    """Bulk "enable", "disable" and "set status to …" actions.

    ``bulk_enable_field`` (a boolean field, e.g. ``"is_active"``) turns on enable/disable;
    ``bulk_status_field`` with ``bulk_status_choices`` (default: the field's choices) adds one action
    per status. Each needs the change permission; with :class:`AuditMixin` every object is audited.
    """

    bulk_enable_field: str | None = None
    bulk_status_field: str | None = None
    bulk_status_choices: Sequence[tuple[str, str]] | None = None

    def _bulk_update(self, request: HttpRequest, queryset: QuerySet[Any], field: str, value: Any) -> int:
        objects = list(queryset)
        for obj in objects:
            before = getattr(obj, field)
            if before == value:
                continue
            setattr(obj, field, value)
            audit = getattr(self, "audit", None)
            if audit is not None:
                audit(request, obj, f"bulk set {field}", {field: [_plain(before), _plain(value)]})
        count = int(queryset.model._default_manager.filter(pk__in=[o.pk for o in objects]).update(**{field: value}))
        self.message_user(request, f"{count} {queryset.model._meta.verbose_name_plural}: {field} set to {value!r}.")
        return count

    def _status_choices(self) -> list[tuple[str, str]]:
        if self.bulk_status_field is None:
            return []
        if self.bulk_status_choices is not None:
            return [(str(v), str(label)) for v, label in self.bulk_status_choices]
        field = self.model._meta.get_field(self.bulk_status_field)
        return [(str(v), str(label)) for v, label in (getattr(field, "choices", None) or [])]

    def get_actions(self, request: HttpRequest, *args: Any, **kwargs: Any) -> dict[str, Any]:
        actions: dict[str, Any] = super().get_actions(request, *args, **kwargs)
        if self.actions is None or not self.has_change_permission(request):
            return actions
        if self.bulk_enable_field is not None:
            field = self.bulk_enable_field
            plural = self.model._meta.verbose_name_plural

            def enable(modeladmin: Any, request: HttpRequest, queryset: QuerySet[Any]) -> None:
                modeladmin._bulk_update(request, queryset, field, True)

            def disable(modeladmin: Any, request: HttpRequest, queryset: QuerySet[Any]) -> None:
                modeladmin._bulk_update(request, queryset, field, False)

            actions["bulk_enable"] = (enable, "bulk_enable", f"Enable selected {plural}")
            actions["bulk_disable"] = (disable, "bulk_disable", f"Disable selected {plural}")
        status_field = self.bulk_status_field or ""
        for value, label in self._status_choices():

            def set_status(modeladmin: Any, request: HttpRequest, queryset: QuerySet[Any], _v: str = value) -> None:
                modeladmin._bulk_update(request, queryset, status_field, _v)

            name = f"bulk_status_{slugify(value).replace('-', '_')}"
            actions[name] = (set_status, name, f"Set status to “{label}”")
        return actions


class SearchMixin(_AdminBase):
    """Advanced search: ``field:value`` terms, quoted phrases, and primary keys.

    ``search_lookups`` maps a term prefix to an ORM lookup, e.g. ``{"topic": "topic__iexact",
    "trace": "trace_id"}``: searching ``topic:orders "late delivery"`` filters on the topic and searches
    the phrase in ``search_fields``. A whole-number term also matches the primary key when
    ``search_by_pk`` is true. Unknown prefixes are searched as plain text.
    """

    search_lookups: dict[str, str] = {}
    search_by_pk: bool = True

    def get_search_results(
        self, request: HttpRequest, queryset: QuerySet[Any], search_term: str
    ) -> tuple[QuerySet[Any], bool]:
        try:
            terms = shlex.split(search_term)
        except ValueError:  # an unbalanced quote: search the text as typed
            terms = search_term.split()
        plain: list[str] = []
        for term in terms:
            prefix, sep, value = term.partition(":")
            if sep and prefix in self.search_lookups and value:
                queryset = queryset.filter(**{self.search_lookups[prefix]: value})
            else:
                plain.append(term)
        if not plain:
            return queryset, False
        pk_terms = [int(t) for t in plain if self.search_by_pk and t.isdigit()]
        text = " ".join(f'"{t}"' if " " in t else t for t in plain)
        results, may_have_duplicates = super().get_search_results(request, queryset, text)
        if pk_terms and len(plain) == 1:
            results = results | queryset.filter(pk__in=pk_terms)
        return results, may_have_duplicates


class FilterMixin(_AdminBase):
    """Builds ``list_filter`` from the model when none is given.

    Booleans, fields with choices, dates and foreign keys (only related objects in use) become
    filters, in field order, at most ``auto_filter_limit`` of them.
    """

    auto_filter_limit: int = 8
    auto_filter_exclude: Sequence[str] = ()

    def get_list_filter(self, request: HttpRequest) -> Any:
        explicit: Sequence[Any] = super().get_list_filter(request)
        if explicit:
            return explicit
        filters: list[Any] = []
        for field in self.model._meta.get_fields():
            if len(filters) >= self.auto_filter_limit:
                break
            name = getattr(field, "name", "")
            if name in self.auto_filter_exclude or not getattr(field, "concrete", False):
                continue
            if isinstance(field, models.ForeignKey):
                filters.append((name, admin.RelatedOnlyFieldListFilter))
            elif isinstance(field, (models.BooleanField, models.DateField)) or getattr(field, "choices", None):
                filters.append(name)
        return filters


class PermissionMixin(_AdminBase):
    """Object-level permissions and named custom permissions.

    * :meth:`has_object_permission` is the override point for per-object rules (owner, state): it is
      consulted by the change, delete and view checks whenever Django asks about one object.
    * ``custom_permissions`` names extra permissions (``("requeue", "purge")``): each gets a
      ``has_<name>_permission(request)`` checking ``<app_label>.<name>_<model_name>``, so actions
      can say ``@admin.action(permissions=["requeue"])``.
    """

    custom_permissions: Sequence[str] = ()

    def has_object_permission(self, request: HttpRequest, obj: Any, action: str) -> bool:
        """Whether ``request.user`` may ``action`` ("view", "change", "delete") ``obj``. Default: yes."""
        return True

    def permission_codename(self, name: str) -> str:
        opts = self.model._meta
        return f"{opts.app_label}.{name}_{opts.model_name}"

    def has_custom_permission(self, request: HttpRequest, name: str) -> bool:
        if name not in self.custom_permissions:
            raise ValueError(
                f"{type(self).__name__}: {name!r} is not in custom_permissions {tuple(self.custom_permissions)}"
            )
        user: Any = request.user
        return bool(user.has_perm(self.permission_codename(name)))

    def __getattr__(self, attribute: str) -> Any:
        if attribute.startswith("has_") and attribute.endswith("_permission"):
            name = attribute[len("has_") : -len("_permission")]
            if name in type(self).custom_permissions:
                return lambda request, obj=None: self.has_custom_permission(request, name)
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {attribute!r}")

    def has_view_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        allowed = super().has_view_permission(request, obj)
        return bool(allowed) and (obj is None or self.has_object_permission(request, obj, "view"))

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        allowed = super().has_change_permission(request, obj)
        return bool(allowed) and (obj is None or self.has_object_permission(request, obj, "change"))

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        allowed = super().has_delete_permission(request, obj)
        return bool(allowed) and (obj is None or self.has_object_permission(request, obj, "delete"))


def warn_each(request: HttpRequest, modeladmin: Any, problems: Iterable[str]) -> None:
    """Reports each problem as a warning message in the admin."""
    for problem in problems:
        modeladmin.message_user(request, problem, level=messages.WARNING)


def any_of(*lookups: Q) -> Q:
    """The OR of ``lookups`` (an empty Q when none)."""
    combined = Q()
    for lookup in lookups:
        combined |= lookup
    return combined
