"""``manage.py headrace_run_due``: run every due bridge once (for cron)."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand


class Command(BaseCommand):
    help = "Runs each bridge of HEADRACE['BRIDGES'] whose next sync time has passed, exactly once across processes."

    def handle(self, *args: Any, **options: Any) -> None:
        from headrace.django import db
        from headrace.django.conf import get_settings
        from headrace.integrations import import_dotted, run_due_bridges

        bridges = [import_dotted(path)() for path in get_settings().BRIDGES]
        store = db.open_store()
        try:
            for run in run_due_bridges(bridges, store=store):
                outcome = "ok" if run.ok else f"failed: {run.error}"
                when = run.next_sync_at.isoformat() if run.next_sync_at else "never (invalid schedule)"
                self.stdout.write(f"{run.bridge_key}: {outcome}; next at {when}")
        finally:
            close = getattr(store, "close", None)
            if close is not None:
                close()
