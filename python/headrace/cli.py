"""The ``headrace`` command line."""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from headrace.errors import ConfigError, HeadraceError
from headrace.outbox import OutboxStore

if TYPE_CHECKING:
    from headrace.runner import Run

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


def _print_table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> None:
    cells = [[str(c) for c in headers]] + [["" if c is None else str(c) for c in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    for row in cells:
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip())


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


def _cmd_run(args: argparse.Namespace) -> int:
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
    try:
        names = manager.start_policies(text, schedule=not args.once)
        if args.once:
            runs = [manager.run_now(name) for name in names]
        else:
            scheduled = [n for n in names if manager.policy(n).config.schedule]
            if scheduled:
                stop = threading.Event()
                for sig in (signal.SIGINT, signal.SIGTERM):
                    signal.signal(sig, lambda *_: stop.set())
                print(f"running {len(names)} policies ({', '.join(scheduled)} on a schedule); Ctrl-C stops")
                while not stop.wait(0.5):
                    pass
                print("stopping: waiting for runs in flight")
            manager.wait_idle(timeout=args.stop_timeout)
            runs = [manager.runs(name)[0] for name in names if manager.runs(name)]
    finally:
        finished = manager.stop(timeout=args.stop_timeout)
        runner_log.removeHandler(handler)
    print()
    if runs:
        _print_table(RUN_HEADERS, _run_rows(runs))
    else:
        print("no run finished")
    target = f"dry-run files in {args.dry_run}" if args.dry_run else f"outbox topic {args.topic!r} in {args.db}"
    total = sum(run.entity_count for run in runs)
    print(f"\n{len(runs)} run(s), {total} entities -> {target}")
    if not args.dry_run:
        stats = store.stats()
        print("outbox: " + ", ".join(f"{k} {v}" for k, v in stats.items()))
    if not finished:
        print("warning: some runs were still in flight when headrace stopped", file=sys.stderr)
    return 0 if all(run.status == "completed" for run in runs) else 1


def _load_app(spec: str) -> Any:
    """A module named ``spec``, or the Python file at ``spec`` (its folder goes on sys.path)."""
    import importlib
    import importlib.util
    from pathlib import Path

    path = Path(spec)
    if spec.endswith(".py") or path.is_file():
        if not path.is_file():
            raise ConfigError(f"--app {spec}: no such file")
        folder = str(path.resolve().parent)
        if folder not in sys.path:
            sys.path.insert(0, folder)
        module_spec = importlib.util.spec_from_file_location(path.stem, path)
        if module_spec is None or module_spec.loader is None:
            raise ConfigError(f"--app {spec}: not a Python module")
        module = importlib.util.module_from_spec(module_spec)
        sys.modules[path.stem] = module
        module_spec.loader.exec_module(module)
        return module
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        return importlib.import_module(spec)
    except ImportError as exc:
        raise ConfigError(f"--app {spec}: cannot import it: {exc}") from exc


def _worker_handlers(app: Any) -> tuple[Any, list[Any]]:
    """HANDLERS and BRIDGES of ``app``, or every registered QueuedClient when there is no app."""
    from headrace.integrations import QueuedClient, registry

    if app is not None:
        handlers = getattr(app, "HANDLERS", None)
        if not handlers:
            raise ConfigError(f"app {app.__name__} defines no HANDLERS (a dict of topic -> handler)")
        return handlers, list(getattr(app, "BRIDGES", []))
    paths = [p for p in os.environ.get("HEADRACE_INTEGRATIONS", "").split(",") if p.strip()]
    registry.load_paths(paths)
    registry.load_entry_points()
    clients = [registry.get(key) for key in registry.keys() if issubclass(registry.get(key), QueuedClient)]
    if not clients:
        raise ConfigError(
            "no handlers: pass --app MODULE (defining HANDLERS), or register QueuedClients through "
            "HEADRACE_INTEGRATIONS or the headrace.integrations entry-point group"
        )
    return clients, []


def _cmd_worker(args: argparse.Namespace) -> int:
    """Runs the outbox worker, and the app's bridges when they are due."""
    import logging
    import threading

    from headrace.integrations import run_due_bridges
    from headrace.worker import OutboxWorker

    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s", "%H:%M:%S"))
    root = logging.getLogger("headrace")
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    try:
        app = _load_app(args.app) if args.app else None
        handlers, bridges = _worker_handlers(app)
        store = OutboxStore.connect(args.db, max_payload_bytes=args.max_payload_bytes)
        state = None
        if not args.no_state:
            from headrace.state import StateBackend

            state = StateBackend.connect(args.db)
        for bridge in bridges:
            if getattr(bridge, "state", None) is None:
                bridge.state = state or args.db  # record the bridge's policy runs beside the outbox
        worker = OutboxWorker(
            store,
            handlers,
            concurrency=args.concurrency,
            batch_size=args.batch_size,
            topics=args.topics,
            state=state,
        )

        def run_bridges() -> list[Any]:
            runs = run_due_bridges(bridges, store=store) if bridges else []
            for run in runs:
                outcome = "ok" if run.ok else f"failed: {run.error}"
                print(f"bridge {run.bridge_key}: {outcome}; next sync {run.next_sync_at:%Y-%m-%d %H:%M:%S} UTC")
            return runs

        if args.once:
            bridge_runs = run_bridges()
            report = worker.run_until_empty()
        else:
            stop = threading.Event()

            def bridge_loop() -> None:
                while not stop.is_set():
                    try:
                        run_bridges()
                    except Exception:
                        logging.getLogger("headrace.integrations").exception("running due bridges failed")
                    stop.wait(args.bridge_interval)

            scanner = threading.Thread(target=bridge_loop, name="headrace-bridges", daemon=True)
            if bridges:
                scanner.start()
            try:
                report = worker.run()
            finally:
                stop.set()
            bridge_runs = []
        if state is not None:
            state.wait_for_all_async_operations()
    finally:
        root.removeHandler(handler)
    print(
        f"\nworker {worker.worker_id}: processed {report.processed} item(s): {report.completed} completed, "
        f"{report.retried} retried, {report.failed} failed, {report.released} released"
    )
    print("outbox: " + ", ".join(f"{k} {v}" for k, v in store.stats().items()))
    return 0 if report.failed == 0 and all(run.ok for run in bridge_runs) else 1


def _cmd_outbox_list(args: argparse.Namespace) -> int:
    items = OutboxStore.connect(args.db).list(status=args.status, topic=args.topic, limit=args.limit)
    rows = [
        [i.id, i.topic, i.status, f"{i.attempts}/{i.max_attempts}", f"{i.run_at:%Y-%m-%d %H:%M:%S}", i.last_error or ""]
        for i in items
    ]
    _print_table(["ID", "TOPIC", "STATUS", "ATTEMPTS", "RUN AT (UTC)", "LAST ERROR"], rows)
    return 0


def _label(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _cmd_metrics(args: argparse.Namespace) -> int:
    """Prometheus text: outbox items by status, and policy executions and backend latency from
    the recorded runs (the last ``max_runs_per_policy`` of each policy)."""
    from headrace.runner import DEFAULT_MAX_RUNS_PER_POLICY, list_runs

    stats = OutboxStore.connect(args.db).stats()
    lines = ["# HELP headrace_outbox_items Outbox items by status.", "# TYPE headrace_outbox_items gauge"]
    lines += [f'headrace_outbox_items{{status="{status}"}} {count}' for status, count in stats.items()]
    runs = list_runs(args.db, limit=DEFAULT_MAX_RUNS_PER_POLICY)
    executions: dict[tuple[str, str], int] = {}
    latency: dict[str, tuple[int, float]] = {}
    for run in runs:
        key = (run.policy_id, str(run.status))
        executions[key] = executions.get(key, 0) + 1
        if run.status != "running":
            count, total = latency.get(run.policy_id, (0, 0.0))
            latency[run.policy_id] = (count + 1, total + (run.updated_at - run.created_at).total_seconds())
    lines += [
        "# HELP headrace_policy_runs Recorded policy runs by status.",
        "# TYPE headrace_policy_runs gauge",
    ]
    lines += [
        f'headrace_policy_runs{{policy="{_label(p)}",status="{s}"}} {n}' for (p, s), n in sorted(executions.items())
    ]
    lines += [
        "# HELP headrace_policy_run_seconds Backend run time of the recorded finished runs.",
        "# TYPE headrace_policy_run_seconds summary",
    ]
    for policy, (count, total) in sorted(latency.items()):
        lines.append(f'headrace_policy_run_seconds_sum{{policy="{_label(policy)}"}} {total}')
        lines.append(f'headrace_policy_run_seconds_count{{policy="{_label(policy)}"}} {count}')
    print("\n".join(lines))
    return 0


def _cmd_runs(args: argparse.Namespace) -> int:
    from headrace.runner import list_runs

    runs = list_runs(args.db, args.policy, limit=args.limit)
    if not runs:
        print("no runs recorded" + (f" for policy {args.policy!r}" if args.policy else ""))
        return 0
    _print_table(RUN_HEADERS, _run_rows(runs))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="headrace", description=__doc__)
    parser.add_argument(
        "--db", default=_default_db(), help=f"database URL (default: $HEADRACE_DATABASE_URL or {DEFAULT_DB})"
    )
    commands = parser.add_subparsers(dest="command", required=True)

    commands.add_parser("migrate", help="apply the schema").set_defaults(handler=_cmd_migrate)

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
    listing = outbox_commands.add_parser("list", help="items, newest first")
    listing.add_argument("--status", choices=["pending", "processing", "completed", "failed"])
    listing.add_argument("--topic")
    listing.add_argument("--limit", type=int, default=50)
    listing.set_defaults(handler=_cmd_outbox_list)

    worker = commands.add_parser("worker", help="run the outbox worker (and the app's bridges when due)")
    worker.add_argument("--db", default=argparse.SUPPRESS, help="database URL (overrides the global --db)")
    worker.add_argument("--app", help="module or .py file defining HANDLERS (topic -> handler) and optional BRIDGES")
    worker.add_argument("--topics", nargs="+", help="claim only these topics")
    worker.add_argument("--concurrency", type=int, default=1, help="batches processed at once (default 1)")
    worker.add_argument("--batch-size", type=int, default=100)
    worker.add_argument("--once", action="store_true", help="run due bridges once, drain the outbox, then exit")
    worker.add_argument("--bridge-interval", type=float, default=30.0, help="seconds between bridge scans")
    worker.add_argument("--max-payload-bytes", type=int, default=3 * 1024 * 1024)
    worker.add_argument("--no-state", action="store_true", help="do not record dispatches in the state backend")
    worker.set_defaults(handler=_cmd_worker)

    commands.add_parser("metrics", help="outbox and policy-run metrics as Prometheus text").set_defaults(
        handler=_cmd_metrics
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
    run.set_defaults(handler=_cmd_run)

    runs = commands.add_parser("runs", help="list recorded policy runs, newest first")
    runs.add_argument("policy", nargs="?", help="only this policy")
    runs.add_argument("--db", default=argparse.SUPPRESS, help="database URL (overrides the global --db)")
    runs.add_argument("--limit", type=int, default=20, help="at most this many runs per policy (default 20)")
    runs.set_defaults(handler=_cmd_runs)
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
