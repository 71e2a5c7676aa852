"""The durable policies' admin: list (with the last run), create and edit as YAML or as a form
(validated by the runner's own validation), enable, disable, delete, run history and "run now".

Policies live in the runner's policy store on the state backend (:mod:`headrace.django.policies`),
not in a table of their own, so these pages are views of their own on the ``Policy`` entry
(which carries the permissions). Running workers follow the store within seconds.
"""

from __future__ import annotations

from typing import Any

import yaml
from django import forms
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import URLPattern, path, reverse
from django.views.decorators.http import require_POST

from headrace.django.admin.audit import ADDITION, CHANGE, DELETION, log_admin_change
from headrace.django.admin_base import BaseModelAdmin
from headrace.django.models import Policy
from headrace.django.policies import DjangoPolicies, PolicyInvalid, open_policies, request_run_now, validate_policy

__all__ = ["PolicyAdmin", "PolicyForm"]

_MODES = [("yaml", "YAML"), ("form", "Form")]


def _yaml(value: Any) -> str:
    return yaml.safe_dump(value, sort_keys=False, default_flow_style=False, allow_unicode=True)


class PolicyForm(forms.Form):
    """A policy as YAML (``config`` and ``scope``) or as form fields; checked by the runner."""

    name = forms.RegexField(regex=r"^[\w.\-]+$", max_length=200, help_text="Letters, digits, '-', '_' and '.'.")
    mode = forms.ChoiceField(choices=_MODES, initial="yaml", widget=forms.RadioSelect)
    document = forms.CharField(
        required=False,
        widget=forms.Textarea(attrs={"rows": 16, "cols": 90, "class": "vLargeTextField headrace-yaml"}),
        help_text="YAML mode: the policy with its <code>config</code> (package, schedule, …) and <code>scope</code>.",
    )
    package = forms.CharField(required=False, help_text="Form mode: config.package, the backend to run.")
    schedule = forms.CharField(required=False, help_text="Form mode: 5-field cron (empty: run once when started).")
    config = forms.CharField(
        required=False, widget=forms.Textarea(attrs={"rows": 4}), help_text="Form mode: more config keys, as YAML."
    )
    scope = forms.CharField(required=False, widget=forms.Textarea(attrs={"rows": 6}), help_text="Form mode: YAML.")
    enabled = forms.BooleanField(required=False, initial=True)

    def __init__(self, *args: Any, editing: bool = False, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if editing:
            self.fields["name"].disabled = True

    def _load(self, field: str) -> Any:
        text = self.cleaned_data.get(field) or ""
        try:
            return yaml.safe_load(text) if text.strip() else None
        except yaml.YAMLError as exc:
            self.add_error(field, f"Invalid YAML: {exc}")
            return None

    def written(self) -> dict[str, Any] | None:
        """The policy as it will be stored (after :meth:`is_valid`)."""
        return self.cleaned_data.get("written")

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        if self.errors:
            return data
        if data.get("mode") == "form":
            if not data.get("package"):
                self.add_error("package", "The form mode needs a package.")
                return data
            extra = self._load("config")
            if extra is not None and not isinstance(extra, dict):
                self.add_error("config", "More config keys must be a YAML mapping.")
                return data
            config = {**(extra or {}), "package": data["package"]}
            if data.get("schedule"):
                config["schedule"] = data["schedule"]
            written: Any = {"config": config, "scope": self._load("scope")}
        else:
            written = self._load("document")
            if not isinstance(written, dict):
                if "document" not in self.errors:
                    self.add_error("document", "The policy must be a YAML mapping with config and scope.")
                return data
        if self.errors:
            return data
        for error in validate_policy(data["name"], written):
            field = error["field"]
            target = "document"
            if data.get("mode") == "form":
                target = {"config.package": "package", "config.schedule": "schedule", "scope": "scope"}.get(
                    field, "config"
                )
            self.add_error(target, f"{field or error['type']}: {error['error']}")
        data["written"] = written
        return data


@admin.register(Policy)
class PolicyAdmin(BaseModelAdmin):
    """See the module documentation. Permissions: view (list, runs), add, change (edit, enable,
    disable), delete, and ``headrace.run_now_policy``."""

    def _policies(self) -> DjangoPolicies:
        return open_policies()

    def has_run_now_permission(self, request: HttpRequest) -> bool:
        user: Any = request.user
        return bool(user.has_perm("headrace.run_now_policy"))

    def get_urls(self) -> list[URLPattern]:
        wrap = self.admin_site.admin_view
        return [
            path("", wrap(self.list_view), name="headrace_policy_changelist"),
            path("add/", wrap(self.edit_view), name="headrace_policy_add"),
            path("<str:name>/change/", wrap(self.edit_view), name="headrace_policy_change"),
            path("<str:name>/delete/", wrap(self.delete_policy_view), name="headrace_policy_delete"),
            path("<str:name>/runs/", wrap(self.runs_view), name="headrace_policy_runs"),
            path("<str:name>/enable/", wrap(require_POST(self.enable_view)), name="headrace_policy_enable"),
            path("<str:name>/disable/", wrap(require_POST(self.disable_view)), name="headrace_policy_disable"),
            path("<str:name>/run-now/", wrap(require_POST(self.run_now_view)), name="headrace_policy_run_now"),
        ]

    def _context(self, request: HttpRequest, title: str, **extra: Any) -> dict[str, Any]:
        return {
            **self.admin_site.each_context(request),
            "opts": self.model._meta,
            "title": title,
            "has_add": self.has_add_permission(request),
            "has_change": self.has_change_permission(request),
            "has_delete": self.has_delete_permission(request),
            "has_run_now": self.has_run_now_permission(request),
            **extra,
        }

    def _url(self, name: str, *args: str) -> str:
        return reverse(f"{self.admin_site.name}:headrace_policy_{name}", args=args)

    def list_view(self, request: HttpRequest) -> HttpResponse:
        if not self.has_view_or_change_permission(request):
            raise PermissionDenied
        policies = self._policies()
        try:
            off = policies.disabled()
            rows = []
            for name, written in policies.all().items():
                config = written.get("config") or {}
                runs = policies.runs(name, 1)
                rows.append(
                    {
                        "name": name,
                        "package": config.get("package"),
                        "schedule": config.get("schedule") or "once",
                        "enabled": name not in off,
                        "last_run": runs[0] if runs else None,
                    }
                )
        finally:
            policies.state.close()
        context = self._context(request, "Policies", rows=rows)
        return TemplateResponse(request, "admin/headrace/policy/list.html", context)

    def edit_view(self, request: HttpRequest, name: str | None = None) -> HttpResponse:
        editing = name is not None
        allowed = self.has_change_permission(request) if editing else self.has_add_permission(request)
        if not allowed:
            raise PermissionDenied
        policies = self._policies()
        try:
            initial: dict[str, Any] = {"mode": "yaml", "enabled": True}
            if name is not None:
                written = policies.get(name)
                if written is None:
                    raise Http404(f"policy {name!r} is not stored")
                config = dict(written.get("config") or {})
                initial = {
                    "name": name,
                    "mode": "yaml",
                    "document": _yaml(written),
                    "package": config.pop("package", ""),
                    "schedule": config.pop("schedule", "") or "",
                    "config": _yaml(config) if config else "",
                    "scope": _yaml(written.get("scope")),
                    "enabled": name not in policies.disabled(),
                }
            form = PolicyForm(request.POST or None, initial=initial, editing=editing)
            if request.method == "POST" and form.is_valid():
                target = name or form.cleaned_data["name"]
                if not editing and policies.get(target) is not None:
                    form.add_error("name", f"A policy named {target!r} exists already.")
                else:
                    try:
                        policies.save(target, form.written() or {})
                    except PolicyInvalid as exc:
                        form.add_error(None, str(exc))
                    else:
                        enabled = bool(form.cleaned_data.get("enabled"))
                        policies.set_enabled(target, enabled)
                        verb = "saved" if editing else "created"
                        state = "enabled" if enabled else "disabled"
                        log_admin_change(
                            request,
                            Policy,
                            [target],
                            f"Policy {verb} ({state}) from the admin.",
                            CHANGE if editing else ADDITION,
                        )
                        self.message_user(
                            request, f"Policy {target!r} {verb}; running workers apply it within seconds."
                        )
                        return HttpResponseRedirect(self._url("changelist"))
        finally:
            policies.state.close()
        title = f"Change policy {name}" if editing else "Add policy"
        context = self._context(request, title, form=form, editing=editing, name=name)
        return TemplateResponse(request, "admin/headrace/policy/form.html", context)

    def delete_policy_view(self, request: HttpRequest, name: str) -> HttpResponse:
        if not self.has_delete_permission(request):
            raise PermissionDenied
        if request.method == "POST":
            policies = self._policies()
            try:
                deleted = policies.delete(name)
            finally:
                policies.state.close()
            if not deleted:
                raise Http404(f"policy {name!r} is not stored")
            log_admin_change(request, Policy, [name], "Policy deleted from the admin.", DELETION)
            self.message_user(request, f"Policy {name!r} deleted; running workers stop it within seconds.")
            return HttpResponseRedirect(self._url("changelist"))
        context = self._context(request, f"Delete policy {name}?", name=name)
        return TemplateResponse(request, "admin/headrace/policy/delete.html", context)

    def runs_view(self, request: HttpRequest, name: str) -> HttpResponse:
        if not self.has_view_or_change_permission(request):
            raise PermissionDenied
        policies = self._policies()
        try:
            if policies.get(name) is None:
                raise Http404(f"policy {name!r} is not stored")
            runs = policies.runs(name, 100)
        finally:
            policies.state.close()
        context = self._context(request, f"Runs of {name}", name=name, runs=runs)
        return TemplateResponse(request, "admin/headrace/policy/runs.html", context)

    def _toggle(self, request: HttpRequest, name: str, enabled: bool) -> HttpResponse:
        if not self.has_change_permission(request):
            raise PermissionDenied
        policies = self._policies()
        try:
            if policies.get(name) is None:
                raise Http404(f"policy {name!r} is not stored")
            policies.set_enabled(name, enabled)
        finally:
            policies.state.close()
        log_admin_change(request, Policy, [name], f"Policy {'enabled' if enabled else 'disabled'} from the admin.")
        self.message_user(request, f"Policy {name!r} {'enabled' if enabled else 'disabled'}.")
        return HttpResponseRedirect(self._url("changelist"))

    def enable_view(self, request: HttpRequest, name: str) -> HttpResponse:
        return self._toggle(request, name, True)

    def disable_view(self, request: HttpRequest, name: str) -> HttpResponse:
        return self._toggle(request, name, False)

    def run_now_view(self, request: HttpRequest, name: str) -> HttpResponse:
        if not self.has_run_now_permission(request):
            raise PermissionDenied
        policies = self._policies()
        try:
            stored = policies.get(name) is not None
        finally:
            policies.state.close()
        if not stored:
            raise Http404(f"policy {name!r} is not stored")
        item = request_run_now(name)
        log_admin_change(request, Policy, [name], f"Run requested from the admin (outbox item #{item}).")
        self.message_user(
            request, f"Run of {name!r} requested (outbox item #{item}); a worker runs it shortly.", messages.SUCCESS
        )
        return HttpResponseRedirect(self._url("runs", name))
