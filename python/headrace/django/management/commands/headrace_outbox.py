"""``manage.py headrace_outbox stats|list|requeue|purge``: look after the outbox."""

from __future__ import annotations

import json
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser


class Command(BaseCommand):
    help = "Outbox operations: stats, list, requeue (an id, or --failed), purge (old terminal items)."

    def add_arguments(self, parser: CommandParser) -> None:
        sub = parser.add_subparsers(dest="action", required=True)
        stats = sub.add_parser("stats", help="Counts per status.")
        stats.add_argument("--json", action="store_true")
        listing = sub.add_parser("list", help="Items, newest first.")
        listing.add_argument("--status", choices=["pending", "processing", "completed", "failed"])
        listing.add_argument("--topic")
        listing.add_argument("--limit", type=int, default=50)
        requeue = sub.add_parser("requeue", help="Back to pending: one item, or every failed one.")
        requeue.add_argument("item_id", nargs="?", type=int)
        requeue.add_argument("--failed", action="store_true", help="Every dead-lettered item.")
        requeue.add_argument("--topic", help="With --failed: only this topic.")
        purge = sub.add_parser("purge", help="Delete terminal items older than --older-than seconds.")
        purge.add_argument("--older-than", type=float, required=True)
        purge.add_argument("--status", action="append", choices=["completed", "failed"])

    def handle(self, *args: Any, **options: Any) -> None:
        from headrace.django import db
        from headrace.errors import HeadraceError

        store = db.open_store()
        try:
            getattr(self, f"_{options['action']}")(store, options)
        except HeadraceError as exc:
            raise CommandError(str(exc)) from exc
        finally:
            close = getattr(store, "close", None)
            if close is not None:
                close()

    def _stats(self, store: Any, options: dict[str, Any]) -> None:
        stats = store.stats()
        if options["json"]:
            self.stdout.write(json.dumps(stats, sort_keys=True))
        else:
            for status, count in sorted(stats.items()):
                self.stdout.write(f"{status:<12} {count}")

    def _list(self, store: Any, options: dict[str, Any]) -> None:
        kwargs: dict[str, Any] = {"limit": options["limit"]}
        if options.get("status"):
            kwargs["status"] = options["status"]
        if options.get("topic"):
            kwargs["topic"] = options["topic"]
        for item in store.list(**kwargs):
            self.stdout.write(
                f"{item.id:>8} {item.status:<10} {item.topic:<30} attempts {item.attempts}/{item.max_attempts}"
                + (f"  {item.last_error}" if item.last_error else "")
            )

    def _requeue(self, store: Any, options: dict[str, Any]) -> None:
        if options["failed"]:
            count = store.requeue_failed(options.get("topic"))
            self.stdout.write(f"requeued {count} failed item(s)")
        elif options["item_id"] is not None:
            store.requeue(options["item_id"])
            self.stdout.write(f"requeued item {options['item_id']}")
        else:
            raise CommandError("give an item id or --failed")

    def _purge(self, store: Any, options: dict[str, Any]) -> None:
        statuses = tuple(options.get("status") or ("completed",))
        count = store.purge(options["older_than"], statuses)
        self.stdout.write(f"purged {count} item(s)")
