"""A workflow definition edited in the admin, validated by the core's own workflow rules."""

from __future__ import annotations

from typing import Any

from django.core.exceptions import ValidationError
from django.db import models

from headrace.errors import ConfigError
from headrace.workflows import Workflow
from headrace.workflows.templates import check_templates

__all__ = ["WorkflowDefinition"]


def _field_of(message: str) -> str | None:
    """The form field a core validation message is about (``None``: the whole definition)."""
    if "conditions" in message or "JsonLogic" in message:
        return "conditions"
    if "step" in message or "template" in message or "filter" in message:
        return "steps"
    return None


class WorkflowDefinition(models.Model):
    """One workflow: a trigger (glob patterns), JsonLogic ``conditions`` and ordered ``steps``
    (``[{"id", "connector", "action", "input"}]``). ``version`` starts at 1 and goes up by one
    each time a save changes the definition; runs keep the version they started with."""

    key: models.SlugField[str, str] = models.SlugField(
        max_length=200, unique=True, help_text="The workflow's stable key."
    )
    name: models.CharField[str, str] = models.CharField(max_length=200, blank=True)
    active: models.BooleanField[bool, bool] = models.BooleanField(
        default=True, help_text="Inactive workflows start no runs."
    )
    version: models.PositiveIntegerField[int, int] = models.PositiveIntegerField(default=1, editable=False)
    trigger_source: models.CharField[str, str] = models.CharField(
        max_length=200, default="*", help_text="Glob pattern, e.g. shop or *."
    )
    trigger_event_type: models.CharField[str, str] = models.CharField(
        max_length=200, default="*", help_text="Glob pattern, e.g. order.*"
    )
    conditions = models.JSONField(
        null=True,
        blank=True,
        help_text='JsonLogic over event and context, e.g. {">": [{"var": "event.payload.total"}, 0]}',
    )
    steps = models.JSONField(
        default=list,
        blank=True,
        help_text='[{"id": "notify", "connector": "slack", "action": "post", "input": {"text": "{{ event.type }}"}}]',
    )
    created_at: models.DateTimeField[Any, Any] = models.DateTimeField(auto_now_add=True)
    updated_at: models.DateTimeField[Any, Any] = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ("key",)
        verbose_name = "workflow"

    def __str__(self) -> str:
        return f"{self.key} v{self.version}"

    def definition(self) -> dict[str, Any]:
        """What a version is made of (everything but ``version`` and ``active``)."""
        return {
            "key": self.key,
            "name": self.name,
            "trigger": {"source": self.trigger_source, "event_type": self.trigger_event_type},
            "conditions": self.conditions,
            "steps": self.steps,
        }

    def to_workflow(self) -> Workflow:
        """The :class:`~headrace.workflows.Workflow` this row defines (``ConfigError`` if invalid)."""
        return Workflow.from_dict({**self.definition(), "version": self.version, "active": self.active})

    def clean(self) -> None:
        """The core's checks: trigger, conditions (operators, depth), step ids and templates."""
        super().clean()
        if not isinstance(self.steps, list):
            raise ValidationError({"steps": "steps must be a JSON list of step objects"})
        try:
            check_templates(self.to_workflow())
        except ConfigError as exc:
            field = _field_of(exc.message)
            raise ValidationError({field: exc.message} if field else exc.message) from None

    def save(self, *args: Any, **kwargs: Any) -> None:
        if self.pk is not None:
            using = kwargs.get("using") or self._state.db
            previous = type(self).objects.using(using).filter(pk=self.pk).first()
            if previous is not None:
                self.version = previous.version + (previous.definition() != self.definition())
        super().save(*args, **kwargs)
