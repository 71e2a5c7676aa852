"""The ``headrace`` command line."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence

from headrace.cli.common import DEFAULT_DB, default_db
from headrace.cli.metrics import cmd_metrics
from headrace.cli.outbox import (
    cmd_migrate,
    cmd_outbox_list,
    cmd_outbox_requeue,
    cmd_outbox_show,
    cmd_outbox_stats,
)
from headrace.cli.runs import cmd_run, cmd_runs
from headrace.cli.worker import cmd_worker
from headrace.errors import HeadraceError


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="headrace", description=__doc__)
    parser.add_argument(
        "--db", default=default_db(), help=f"database URL (default: $HEADRACE_DATABASE_URL or {DEFAULT_DB})"
    )
    commands = parser.add_subparsers(dest="command", required=True)

    commands.add_parser("migrate", help="apply the schema").set_defaults(handler=cmd_migrate)

    outbox = commands.add_parser("outbox", help="inspect and repair the outbox")
    outbox_commands = outbox.add_subparsers(dest="outbox_command", required=True)
    outbox_commands.add_parser("stats", help="item counts per status").set_defaults(handler=cmd_outbox_stats)
    show = outbox_commands.add_parser("show", help="one item")
    show.add_argument("item_id", type=item_id)
    show.set_defaults(handler=cmd_outbox_show)
    requeue = outbox_commands.add_parser("requeue", help="requeue one item, or every failed item")
    requeue.add_argument("item_id", type=item_id, nargs="?")
    requeue.add_argument("--topic", help="only failed items of this topic")
    requeue.set_defaults(handler=cmd_outbox_requeue)
    listing = outbox_commands.add_parser("list", help="items, newest first")
    listing.add_argument("--status", choices=["pending", "processing", "completed", "failed"])
    listing.add_argument("--topic")
    listing.add_argument("--limit", type=non_negative, default=50)
    listing.set_defaults(handler=cmd_outbox_list)

    worker = commands.add_parser("worker", help="run the outbox worker (and the app's bridges when due)")
    worker.add_argument("--db", default=argparse.SUPPRESS, help="database URL (overrides the global --db)")
    worker.add_argument("--app", help="module or .py file defining HANDLERS (topic -> handler) and optional BRIDGES")
    worker.add_argument("--topics", nargs="+", help="claim only these topics")
    worker.add_argument("--concurrency", type=positive, default=1, help="batches processed at once (default 1)")
    worker.add_argument("--batch-size", type=positive, default=100)
    worker.add_argument("--once", action="store_true", help="run due bridges once, drain the outbox, then exit")
    worker.add_argument("--bridge-interval", type=float, default=30.0, help="seconds between bridge scans")
    worker.add_argument("--max-payload-bytes", type=positive, default=3 * 1024 * 1024)
    worker.add_argument("--no-state", action="store_true", help="do not record dispatches in the state backend")
    worker.set_defaults(handler=cmd_worker)

    commands.add_parser("metrics", help="outbox and policy-run metrics as Prometheus text").set_defaults(
        handler=cmd_metrics
    )

    run = commands.add_parser(
        "run",
        help="run the policies of a YAML file (once, or on their schedules) into the outbox",
        description="Loads POLICIES (YAML: policies: {name: {config: {package, schedule, ...}, scope}}) "
        "and runs them: each policy without a schedule once, the others on their 5-field cron "
        "schedules until interrupted. Entities go to the outbox of --db; runs are recorded there too.",
    )
    run.add_argument("policies", help="the policies YAML file")
    run.add_argument("--db", default=argparse.SUPPRESS, help="database URL (overrides the global --db)")
    run.add_argument("--once", action="store_true", help="run every policy once now, then exit")
    run.add_argument("--topic", default="headrace.entities", help="outbox topic (default: headrace.entities)")
    run.add_argument("--dry-run", metavar="DIR", help="write each chunk as a JSON file in DIR instead")
    run.add_argument(
        "--stop-timeout", type=float, default=30.0, help="seconds to wait for runs in flight when stopping"
    )
    run.set_defaults(handler=cmd_run)

    runs = commands.add_parser("runs", help="list recorded policy runs, newest first")
    runs.add_argument("policy", nargs="?", help="only this policy")
    runs.add_argument("--db", default=argparse.SUPPRESS, help="database URL (overrides the global --db)")
    runs.add_argument("--limit", type=non_negative, default=20, help="at most this many runs per policy (default 20)")
    runs.set_defaults(handler=cmd_runs)

    from headrace import plugins

    plugins.add_cli(commands)  # headrace plugins (#13)
    return parser


def _integer(text: str, low: int, rule: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    if not low <= value <= 2**63 - 1:
        raise argparse.ArgumentTypeError(f"{text} is out of range: it must be {rule}")
    return value


def item_id(text: str) -> int:
    """An outbox item id: an integer from 1 to 2**63 - 1."""
    return _integer(text, 1, "an item id from 1 to 2**63 - 1")


def positive(text: str) -> int:
    """An integer >= 1."""
    return _integer(text, 1, ">= 1")


def non_negative(text: str) -> int:
    """An integer >= 0."""
    return _integer(text, 0, ">= 0")


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    handler: Callable[[argparse.Namespace], int] = args.handler
    try:
        return handler(args)
    except HeadraceError as exc:
        print(f"headrace: {exc} [{exc.code}]", file=sys.stderr)
        return 2
