"""Every change made from headrace's admin pages is written to Django's admin log, as the
built-in add, change and delete views do: it shows in "Recent actions" and in each object's
history, with the user and what was done."""

from __future__ import annotations

from collections.abc import Iterable

from django.contrib.admin.models import ADDITION, CHANGE, DELETION, LogEntry
from django.contrib.contenttypes.models import ContentType
from django.db import models
from django.http import HttpRequest

__all__ = ["ADDITION", "CHANGE", "DELETION", "log_admin_change"]

#: ``LogEntry.object_repr`` is a 200-character column.
_REPR_CHARS = 200


def log_admin_change(
    request: HttpRequest,
    model: type[models.Model],
    object_ids: Iterable[object],
    message: str,
    action_flag: int = CHANGE,
) -> int:
    """Writes one admin-log entry per object id (in one statement) and returns how many.

    ``message`` is the plain-text change message shown in the history. Requests without an
    authenticated user (none reach the admin's views) write nothing.
    """
    user_id = getattr(request.user, "pk", None)
    ids = [str(pk) for pk in object_ids]
    if user_id is None or not ids:
        return 0
    content_type = ContentType.objects.get_for_model(model, for_concrete_model=False)
    label = str(model._meta.verbose_name)
    entries = [
        LogEntry(
            user_id=user_id,
            content_type_id=content_type.pk,
            object_id=pk,
            object_repr=f"{label} {pk}"[:_REPR_CHARS],
            action_flag=action_flag,
            change_message=message,
        )
        for pk in ids
    ]
    LogEntry.objects.bulk_create(entries)
    return len(entries)
