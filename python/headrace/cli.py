"""The ``headrace`` command line."""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable, Sequence

from headrace.errors import HeadraceError
from headrace.outbox import OutboxStore

DEFAULT_DB = "sqlite://headrace.db"


def _default_db() -> str:
    return os.environ.get("HEADRACE_DATABASE_URL", DEFAULT_DB)


def _cmd_migrate(args: argparse.Namespace) -> int:
    OutboxStore.connect(args.db, migrate=True)
    print(f"schema is up to date in {args.db}")
    return 0


def _cmd_outbox_stats(args: argparse.Namespace) -> int:
    stats = OutboxStore.connect(args.db).stats()
    width = max(len(k) for k in stats)
    for status, count in stats.items():
        print(f"{status:<{width}}  {count}")
    return 0


def _cmd_outbox_show(args: argparse.Namespace) -> int:
    item = OutboxStore.connect(args.db).get(args.item_id)
    fields = [
        "id",
        "topic",
        "status",
        "priority",
        "attempts",
        "max_attempts",
        "run_at",
        "lease_owner",
        "lease_expires_at",
        "last_error",
        "dedupe_key",
        "trace_id",
        "created_at",
        "updated_at",
    ]
    for field in fields:
        print(f"{field:<16} {getattr(item, field)}")
    print(f"{'payload':<16} {json.dumps(item.payload)}")
    return 0


def _cmd_outbox_requeue(args: argparse.Namespace) -> int:
    store = OutboxStore.connect(args.db)
    if args.item_id is not None:
        store.requeue(args.item_id)
        print(f"requeued item {args.item_id}")
    else:
        count = store.requeue_failed(args.topic)
        print(f"requeued {count} failed item(s)")
    return 0


def _cmd_demo(args: argparse.Namespace) -> int:
    """Enqueues a few items and drains them, showing retry and dead-letter on the way."""
    from headrace.outbox import RetryPolicy

    store = OutboxStore.connect(args.db, retry=RetryPolicy(max_attempts=2, base_seconds=0, jitter=0))
    ids = store.enqueue_many(
        [{"topic": "demo.greet", "payload": {"name": name}} for name in ("ada", "grace", "linus")]
    )
    bad = store.enqueue("demo.greet", {"name": None})
    print(f"enqueued {len(ids) + 1} items into {args.db}")
    while items := store.claim_batch("demo-worker", limit=10, topics=["demo.greet"]):
        done = []
        for item in items:
            if item.payload["name"] is None:
                status = store.mark_retry(item.id, "demo-worker", error="name is missing")
                print(f"  item {item.id}: attempt {item.attempts} failed -> {status}")
            else:
                print(f"  item {item.id}: hello, {item.payload['name']}")
                done.append(item.id)
        store.mark_success_many(done, "demo-worker")
    print(f"dead letter: {store.get(bad).last_error!r}")
    print("stats:", store.stats())
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="headrace", description=__doc__)
    parser.add_argument(
        "--db", default=_default_db(), help=f"database URL (default: $HEADRACE_DATABASE_URL or {DEFAULT_DB})"
    )
    commands = parser.add_subparsers(dest="command", required=True)

    commands.add_parser("migrate", help="apply the schema").set_defaults(handler=_cmd_migrate)
    commands.add_parser("demo", help="a small outbox round trip").set_defaults(handler=_cmd_demo)

    outbox = commands.add_parser("outbox", help="inspect and repair the outbox")
    outbox_commands = outbox.add_subparsers(dest="outbox_command", required=True)
    outbox_commands.add_parser("stats", help="item counts per status").set_defaults(handler=_cmd_outbox_stats)
    show = outbox_commands.add_parser("show", help="one item")
    show.add_argument("item_id", type=int)
    show.set_defaults(handler=_cmd_outbox_show)
    requeue = outbox_commands.add_parser("requeue", help="requeue one item, or every failed item")
    requeue.add_argument("item_id", type=int, nargs="?")
    requeue.add_argument("--topic", help="only failed items of this topic")
    requeue.set_defaults(handler=_cmd_outbox_requeue)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    handler: Callable[[argparse.Namespace], int] = args.handler
    try:
        return handler(args)
    except HeadraceError as exc:
        print(f"headrace: {exc} [{exc.code}]", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
