"""``manage.py headrace_worker``: the outbox worker, the policy runner and due bridges."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandParser


def _names(value: str | None) -> list[str]:
    return [name.strip() for name in (value or "").split(",") if name.strip()]


class Command(BaseCommand):
    help = (
        "Runs the headrace outbox worker (HEADRACE['HANDLERS'] and the Tasks backends' queues), "
        "the policy runner (HEADRACE['POLICIES']) and due bridges (HEADRACE['BRIDGES']). The "
        "first SIGTERM/SIGINT finishes in-flight items and gives unstarted ones back; a second exits."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--burst", action="store_true", help="Drain every due item, then exit.")
        parser.add_argument("--topics", help="Comma-separated topics to process (default: all handled).")
        parser.add_argument("--exclude-topics", help="Comma-separated topics never to process.")
        parser.add_argument("--concurrency", type=int, help="Handler threads (default HEADRACE['CONCURRENCY']).")
        parser.add_argument("--batch-size", type=int, help="Items per claim (default HEADRACE['BATCH_SIZE']).")
        parser.add_argument("--worker-id", help="This worker's id in leases and heartbeats.")
        parser.add_argument("--no-policies", action="store_true", help="Do not run HEADRACE['POLICIES'].")
        parser.add_argument("--no-bridges", action="store_true", help="Do not run HEADRACE['BRIDGES'].")
        parser.add_argument(
            "--reload",
            action="store_true",
            help="Restart when code changes (development only; Django's autoreloader).",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        if options["reload"]:
            from django.utils import autoreload

            autoreload.run_with_reloader(self._run, **options)
        else:
            self._run(**options)

    def _run(self, **options: Any) -> None:
        from headrace.django.worker import DjangoWorker, WorkerOptions
        from headrace.errors import ConfigError

        if options.get("concurrency") is not None and options["concurrency"] < 1:
            raise ConfigError(f"--concurrency must be >= 1, got {options['concurrency']}")
        worker = DjangoWorker(
            WorkerOptions(
                topics=_names(options.get("topics")) or None,
                exclude_topics=_names(options.get("exclude_topics")),
                concurrency=options.get("concurrency"),
                batch_size=options.get("batch_size"),
                worker_id=options.get("worker_id"),
                policies=not options.get("no_policies"),
                bridges=not options.get("no_bridges"),
            )
        )
        self.stdout.write(f"headrace worker {worker.worker_id} on database {worker.alias!r}")
        self.stdout.flush()
        report = worker.run_burst() if options.get("burst") else worker.run()
        self.stdout.write(
            f"processed {report.processed}: completed {report.completed}, retried {report.retried}, "
            f"failed {report.failed}"
        )
