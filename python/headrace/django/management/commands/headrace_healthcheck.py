"""``manage.py headrace_healthcheck``: exit 0 when healthy, 1 (with the problems) otherwise."""

from __future__ import annotations

import json
import sys
from typing import Any

from django.core.management.base import BaseCommand, CommandParser


class Command(BaseCommand):
    help = "Checks the database, the headrace migrations, worker heartbeats and the oldest pending item."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--json", action="store_true", help="Print the report as JSON.")
        parser.add_argument("--heartbeat-max-age", type=float, help="Seconds (default HEADRACE['HEARTBEAT_MAX_AGE']).")
        parser.add_argument("--max-pending-age", type=float, help="Fail when the oldest due item waits longer.")
        parser.add_argument("--no-worker", action="store_true", help="Do not require a worker heartbeat.")

    def handle(self, *args: Any, **options: Any) -> None:
        from headrace.django.health import check_health

        report = check_health(
            heartbeat_max_age=options.get("heartbeat_max_age"),
            max_pending_age=options.get("max_pending_age"),
            require_worker=not options["no_worker"],
        )
        if options["json"]:
            self.stdout.write(json.dumps(report.as_dict(), sort_keys=True, default=str))
        else:
            self.stdout.write("healthy" if report.ok else "unhealthy: " + "; ".join(report.problems))
        if not report.ok:
            sys.exit(1)
