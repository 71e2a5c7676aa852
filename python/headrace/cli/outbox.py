"""`headrace migrate` and `headrace outbox ...`: inspect and repair the outbox."""

from __future__ import annotations

import argparse
import json

from headrace._core import redact_url
from headrace.cli.common import print_table
from headrace.outbox import OutboxStore


def cmd_migrate(args: argparse.Namespace) -> int:
    OutboxStore.connect(args.db, migrate=True)
    print(f"schema is up to date in {redact_url(args.db)}")
    return 0


def cmd_outbox_stats(args: argparse.Namespace) -> int:
    stats = OutboxStore.connect(args.db).stats()
    width = max(len(k) for k in stats)
    for status, count in stats.items():
        print(f"{status:<{width}}  {count}")
    return 0


def cmd_outbox_show(args: argparse.Namespace) -> int:
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


def cmd_outbox_requeue(args: argparse.Namespace) -> int:
    store = OutboxStore.connect(args.db)
    if args.item_id is not None:
        store.requeue(args.item_id)
        print(f"requeued item {args.item_id}")
    else:
        count = store.requeue_failed(args.topic)
        print(f"requeued {count} failed item(s)")
    return 0


def cmd_outbox_list(args: argparse.Namespace) -> int:
    items = OutboxStore.connect(args.db).list(status=args.status, topic=args.topic, limit=args.limit)
    rows = [
        [i.id, i.topic, i.status, f"{i.attempts}/{i.max_attempts}", f"{i.run_at:%Y-%m-%d %H:%M:%S}", i.last_error or ""]
        for i in items
    ]
    print_table(["ID", "TOPIC", "STATUS", "ATTEMPTS", "RUN AT (UTC)", "LAST ERROR"], rows)
    return 0
