"""`headrace run` and `headrace runs`: run policies, list recorded runs."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING

from headrace._core import redact_url
from headrace.cli.common import print_table
from headrace.outbox import OutboxStore

if TYPE_CHECKING:
    from headrace.runner import Run


def _run_rows(runs: Sequence[Run]) -> list[list[object]]:
    rows = []
    for run in runs:
        seconds = (run.updated_at - run.created_at).total_seconds()
        rows.append(
            [
                run.policy_id,
                run.status,
                run.source,
                run.entity_count,
                run.metadata.get("chunk_count", ""),
                f"{seconds:.2f}s" if run.status != "running" else "",
                run.created_at.strftime("%Y-%m-%d %H:%M:%S"),
                run.id,
                run.reason or "",
            ]
        )
    return rows


RUN_HEADERS = [
    "POLICY",
    "STATUS",
    "SOURCE",
    "ENTITIES",
    "CHUNKS",
    "TOOK",
    "STARTED (UTC)",
    "RUN ID",
    "REASON",
]


def cmd_run(args: argparse.Namespace) -> int:
    """Loads a policies file and runs its policies: once (--once), or on their schedules."""
    import logging
    import signal
    import threading
    from pathlib import Path

    from headrace.runner import DEFAULT_CHUNK_BYTES, DryRunSink, OutboxSink, PolicyManager

    path = Path(args.policies)
    try:
        text = path.read_text()
    except OSError as exc:
        print(f"headrace: cannot read policies file {path}: {exc.strerror or exc}", file=sys.stderr)
        return 2
    # Backends named by module are found beside the policies file, then in the working directory.
    for directory in (str(path.resolve().parent), os.getcwd()):
        if directory not in sys.path:
            sys.path.insert(0, directory)
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s", "%H:%M:%S"))
    runner_log = logging.getLogger("headrace.runner")
    runner_log.addHandler(handler)
    runner_log.setLevel(logging.INFO)

    store = OutboxStore.connect(args.db, max_payload_bytes=DEFAULT_CHUNK_BYTES)
    sink = DryRunSink(args.dry_run) if args.dry_run else OutboxSink(store, topic=args.topic)
    manager = PolicyManager(state=args.db, sink=sink)
    interrupted = False
    runs: list[Run] = []
    try:
        names = manager.start_policies(text, schedule=not args.once)
        if args.once:
            try:
                for name in names:
                    runs.append(manager.run_now(name))
            except KeyboardInterrupt:
                # Ctrl-C (or SIGTERM's KeyboardInterrupt): stop, waiting --stop-timeout at most.
                interrupted = True
                print(f"interrupted: stopping (waiting up to {args.stop_timeout:g} s for runs in flight)")
        else:
            scheduled = [n for n in names if manager.policy(n).config.schedule]
            if scheduled:
                stop = threading.Event()
                previous = {sig: signal.signal(sig, lambda *_: stop.set()) for sig in (signal.SIGINT, signal.SIGTERM)}
                print(f"running {len(names)} policies ({', '.join(scheduled)} on a schedule); Ctrl-C stops")
                try:
                    while not stop.wait(0.5):
                        pass
                finally:
                    for sig, previous_handler in previous.items():
                        signal.signal(sig, previous_handler)
                print("stopping: waiting for runs in flight")
            manager.wait_idle(timeout=args.stop_timeout)
            runs = [manager.runs(name)[0] for name in names if manager.runs(name)]
    finally:
        try:
            finished = manager.stop(timeout=args.stop_timeout)
        except KeyboardInterrupt:  # a second Ctrl-C: do not wait any longer
            finished, interrupted = False, True
        runner_log.removeHandler(handler)
    print()
    if runs:
        print_table(RUN_HEADERS, _run_rows(runs))
    else:
        print("no run finished")
    shown_db = redact_url(args.db)
    target = f"dry-run files in {args.dry_run}" if args.dry_run else f"outbox topic {args.topic!r} in {shown_db}"
    total = sum(run.entity_count for run in runs)
    print(f"\n{len(runs)} run(s), {total} entities -> {target}")
    if not args.dry_run:
        stats = store.stats()
        print("outbox: " + ", ".join(f"{k} {v}" for k, v in stats.items()))
    if not finished:
        print("warning: some runs were still in flight when headrace stopped", file=sys.stderr)
    code = 130 if interrupted else 0 if all(run.status == "completed" for run in runs) else 1
    if not finished:
        # A backend still running (hung) would be cut off mid-call by the interpreter's exit,
        # which can crash the process: leave at once instead, output flushed.
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    return code


def cmd_runs(args: argparse.Namespace) -> int:
    from headrace.runner import list_runs

    runs = list_runs(args.db, args.policy, limit=args.limit)
    if not runs:
        print("no runs recorded" + (f" for policy {args.policy!r}" if args.policy else ""))
        return 0
    print_table(RUN_HEADERS, _run_rows(runs))
    return 0
