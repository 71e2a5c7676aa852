"""The seed's admin base classes, for headrace's own admin and for yours.

::

    from headrace.django.admin_base import BaseModelAdmin

    @admin.register(Order)
    class OrderAdmin(BaseModelAdmin):
        def get_list_display(self, request):
            return ["custom_field", *super().get_list_display(request)]

        def get_readonly_fields(self, request, obj=None):
            readonly = super().get_readonly_fields(request, obj)   # always a list
            return readonly + ["name"] if obj and obj.is_locked else readonly

``get_list_display`` and ``get_readonly_fields`` return lists, so ``+ [...]`` works on either.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import models, transaction
from django.db.models import QuerySet
from django.forms import modelform_factory
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import URLPattern, path, reverse
from django.utils import timezone

from headrace.django.admin_mixins import (
    TIMESTAMP_FIELDS,
    AuditMixin,
    BulkActionsMixin,
    ExportMixin,
    FilterMixin,
    PermissionMixin,
    SearchMixin,
    pretty_json,
    truncate,
)
from headrace.django.tenancy import resolve_request_tenant

__all__ = [
    "AuditMixin",
    "AuditableModelAdmin",
    "BaseModelAdmin",
    "BulkActionsMixin",
    "ExportMixin",
    "FilterMixin",
    "ImportExportBaseAdmin",
    "InlineBaseAdmin",
    "PermissionMixin",
    "SearchMixin",
    "SoftDeleteAdmin",
    "StackedInlineBaseAdmin",
    "TenantScopedAdmin",
    "pretty_json",
    "truncate",
]


if TYPE_CHECKING:
    _ModelAdmin = admin.ModelAdmin[Any]
else:
    _ModelAdmin = admin.ModelAdmin


def _timestamp_fields(model: type[models.Model]) -> list[str]:
    names = {f.name for f in model._meta.concrete_fields}
    return [name for name in TIMESTAMP_FIELDS if name in names]


class BaseModelAdmin(_ModelAdmin):
    """Base for every admin: timestamps read-only and listed last, 50 rows a page, no full count.

    ``show_full_result_count = False`` saves a ``COUNT(*)`` over the whole table on every filtered
    page. Utilities: :func:`pretty_json`, :func:`truncate`.
    """

    list_per_page = 50
    list_max_show_all = 500
    show_full_result_count = False
    empty_value_display = "—"
    save_on_top = True

    def get_list_display(self, request: HttpRequest) -> list[Any]:
        display = list(super().get_list_display(request))
        if display == ["__str__"]:
            display = ["__str__", *[n for n in _timestamp_fields(self.model) if n not in display]]
        return display

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> list[str]:
        readonly = [str(name) for name in super().get_readonly_fields(request, obj)]
        return readonly + [name for name in _timestamp_fields(self.model) if name not in readonly]

    def get_queryset(self, request: HttpRequest) -> QuerySet[Any]:
        return super().get_queryset(request)


class TenantScopedAdmin(BaseModelAdmin):
    """Shows and edits only the rows of the request's tenant (``tenant_field``, default ``tenant_id``).

    The tenant comes from :func:`headrace.django.tenancy.resolve_request_tenant`. A request with no
    tenant sees nothing; superusers see every tenant unless ``tenant_superuser_sees_all`` is false.
    New rows get the request's tenant; the tenant field is read-only for scoped users, and foreign
    key choices are limited to the tenant's rows when the related model has the same field.
    """

    tenant_field = "tenant_id"
    tenant_superuser_sees_all = True

    def get_request_tenant(self, request: HttpRequest) -> Any:
        return resolve_request_tenant(request)

    def is_unscoped(self, request: HttpRequest) -> bool:
        return bool(self.tenant_superuser_sees_all and getattr(request.user, "is_superuser", False))

    def get_queryset(self, request: HttpRequest) -> QuerySet[Any]:
        queryset = super().get_queryset(request)
        if self.is_unscoped(request):
            return queryset
        tenant = self.get_request_tenant(request)
        if tenant is None:
            return queryset.none()
        return queryset.filter(**{self.tenant_field: tenant})

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> list[str]:
        readonly = super().get_readonly_fields(request, obj)
        if self.is_unscoped(request):
            return readonly
        name = (
            self.model._meta.get_field(self.tenant_field.removesuffix("_id")).name
            if self._tenant_is_fk()
            else self.tenant_field
        )
        return readonly if name in readonly else [*readonly, name]

    def _tenant_is_fk(self) -> bool:
        names = {f.attname: f for f in self.model._meta.concrete_fields}
        field = names.get(self.tenant_field)
        return field is not None and field.is_relation

    def save_model(self, request: HttpRequest, obj: Any, form: Any, change: bool) -> None:
        if not self.is_unscoped(request):
            tenant = self.get_request_tenant(request)
            if tenant is None:
                raise PermissionDenied("This request acts for no tenant, so it cannot save tenant-scoped rows.")
            setattr(obj, self.tenant_field, tenant)
        super().save_model(request, obj, form, change)

    def formfield_for_foreignkey(self, db_field: Any, request: HttpRequest, **kwargs: Any) -> Any:
        field = super().formfield_for_foreignkey(db_field, request, **kwargs)
        related = db_field.remote_field.model
        related_fields = {f.attname for f in related._meta.concrete_fields}
        scoped = self.tenant_field in related_fields and not self.is_unscoped(request)
        if field is not None and field.queryset is not None and scoped:
            tenant = self.get_request_tenant(request)
            field.queryset = (
                field.queryset.none() if tenant is None else field.queryset.filter(**{self.tenant_field: tenant})
            )
        return field


class AuditableModelAdmin(AuditMixin, BaseModelAdmin):
    """Logs every add, change, delete and bulk action with field-level before/after values."""


class _ImportForm(forms.Form):
    file = forms.FileField(help_text="A CSV file with a header row, or a JSON list of objects.")


class ImportExportBaseAdmin(ExportMixin, BaseModelAdmin):
    """CSV/JSON export actions, and an import page (``…/import/``) linked from the change list.

    Every imported row goes through the admin's own ``ModelForm`` (``import_fields``, default: the
    form's fields), and the import is all or nothing: one invalid row imports none and lists every
    row's errors. Importing needs the add permission.
    """

    import_fields: Sequence[str] | None = None
    change_list_template = "admin/headrace/import_export_change_list.html"

    def has_import_permission(self, request: HttpRequest) -> bool:
        return self.has_add_permission(request)

    def get_urls(self) -> list[URLPattern]:
        opts = self.model._meta
        name = f"{opts.app_label}_{opts.model_name}_import"
        own = [path("import/", self.admin_site.admin_view(self.import_view), name=name)]
        return own + super().get_urls()

    def get_import_form_class(self, request: HttpRequest) -> type[forms.ModelForm[Any]]:
        fields = list(self.import_fields) if self.import_fields is not None else self.get_export_fields(request)
        editable = {f.attname: f.name for f in self.model._meta.concrete_fields if f.editable and not f.primary_key}
        names = [editable.get(name, name) for name in fields if name in editable or name in editable.values()]
        return modelform_factory(self.model, fields=names)

    def parse_import_file(self, upload: Any) -> list[dict[str, Any]]:
        raw = upload.read()
        try:
            text = raw.decode("utf-8-sig")
        except UnicodeDecodeError as exc:
            raise ValidationError(f"the file is not UTF-8 text: {exc}") from exc
        if upload.name.lower().endswith(".json") or text.lstrip().startswith("["):
            try:
                rows = json.loads(text)
            except ValueError as exc:
                raise ValidationError(f"the file is not valid JSON: {exc}") from exc
            if not isinstance(rows, list) or not all(isinstance(r, dict) for r in rows):
                raise ValidationError("a JSON import must be a list of objects")
            return rows
        return list(csv.DictReader(io.StringIO(text)))

    def import_rows(self, request: HttpRequest, rows: list[dict[str, Any]]) -> tuple[int, list[str]]:
        """Saves ``rows`` through the import form, all or nothing: (count saved, errors)."""
        form_class = self.get_import_form_class(request)
        errors: list[str] = []
        saved = 0
        with transaction.atomic(using=self.model._default_manager.db):
            for number, row in enumerate(rows, start=1):
                data = {
                    k.removesuffix("_id")
                    if k.endswith("_id") and k.removesuffix("_id") in form_class.base_fields
                    else k: v
                    for k, v in row.items()
                }
                form = form_class(data=data)
                if not form.is_valid():
                    for field, field_errors in form.errors.items():
                        errors.extend(f"row {number}, {field}: {e}" for e in field_errors)
                    continue
                obj = form.save(commit=False)
                self.save_model(request, obj, form, change=False)
                saved += 1
            if errors:
                transaction.set_rollback(True, using=self.model._default_manager.db)
                return 0, errors
        return saved, []

    def import_view(self, request: HttpRequest) -> HttpResponse:
        if not self.has_import_permission(request):
            raise PermissionDenied
        request.current_app = self.admin_site.name
        opts = self.model._meta
        errors: list[str] = []
        form = _ImportForm(request.POST or None, request.FILES or None)
        if request.method == "POST" and form.is_valid():
            try:
                rows = self.parse_import_file(form.cleaned_data["file"])
            except ValidationError as exc:
                errors = list(exc.messages)
            else:
                saved, errors = self.import_rows(request, rows)
                if not errors:
                    self.message_user(request, f"Imported {saved} {opts.verbose_name_plural}.", messages.SUCCESS)
                    changelist = f"{self.admin_site.name}:{opts.app_label}_{opts.model_name}_changelist"
                    return HttpResponseRedirect(reverse(changelist))
        context = {
            **self.admin_site.each_context(request),
            "opts": opts,
            "form": form,
            "errors": errors,
            "title": f"Import {opts.verbose_name_plural}",
        }
        return TemplateResponse(request, "admin/headrace/import.html", context)


def _deleted_filter(field: str) -> type[admin.SimpleListFilter]:
    """A "deleted" filter over ``field``: not deleted (the default), deleted, or all."""

    class DeletedFilter(admin.SimpleListFilter):
        title = "deleted"
        parameter_name = "deleted"

        def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
            return [("yes", "Deleted"), ("all", "All")]

        def choices(self, changelist: Any) -> Any:
            value = self.value()
            for lookup, title in (("", "Not deleted"), ("yes", "Deleted"), ("all", "All")):
                yield {
                    "selected": (value or "") == lookup,
                    "query_string": changelist.get_query_string(
                        {self.parameter_name: lookup} if lookup else {}, [] if lookup else [self.parameter_name]
                    ),
                    "display": title,
                }

        def queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any]:
            value = self.value()
            if value == "all":
                return queryset
            return queryset.filter(**{f"{field}__isnull": value != "yes"})

    return DeletedFilter


class SoftDeleteAdmin(BaseModelAdmin):
    """Deleting sets ``deleted_field`` (default ``deleted_at``) instead of removing the row.

    The list hides deleted rows unless the "deleted" filter says otherwise; a "Restore" action
    brings rows back (change permission).
    """

    deleted_field = "deleted_at"
    actions = ["restore_selected"]

    def get_list_filter(self, request: HttpRequest) -> Any:
        return [*super().get_list_filter(request), _deleted_filter(self.deleted_field)]

    def delete_model(self, request: HttpRequest, obj: Any) -> None:
        setattr(obj, self.deleted_field, timezone.now())
        obj.save(update_fields=[self.deleted_field])

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> None:
        queryset.update(**{self.deleted_field: timezone.now()})

    @admin.action(description="Restore selected", permissions=["change"])
    def restore_selected(self, request: HttpRequest, queryset: QuerySet[Any]) -> None:
        count = queryset.filter(**{f"{self.deleted_field}__isnull": False}).update(**{self.deleted_field: None})
        self.message_user(request, f"Restored {count} {self.model._meta.verbose_name_plural}.", messages.SUCCESS)


class InlineBaseAdmin(admin.TabularInline):  # type: ignore[type-arg]
    """Tabular inline: no blank extra rows, a link to each row, timestamps read-only."""

    extra = 0
    show_change_link = True

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> list[str]:
        readonly = [str(name) for name in super().get_readonly_fields(request, obj)]
        return readonly + [n for n in _timestamp_fields(self.model) if n not in readonly]


class StackedInlineBaseAdmin(admin.StackedInline):  # type: ignore[type-arg]
    """Stacked inline with the same defaults as :class:`InlineBaseAdmin`."""

    extra = 0
    show_change_link = True

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> list[str]:
        readonly = [str(name) for name in super().get_readonly_fields(request, obj)]
        return readonly + [n for n in _timestamp_fields(self.model) if n not in readonly]


# Re-exported so ``from headrace.django.admin_base import …`` finds every seed name in one place.
_ = (BulkActionsMixin, FilterMixin, PermissionMixin, SearchMixin, pretty_json, truncate)
