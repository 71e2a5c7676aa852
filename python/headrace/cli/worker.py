"""`headrace worker`: the outbox worker, and the app's bridges when due."""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any

from headrace.errors import ConfigError
from headrace.outbox import OutboxStore


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


def cmd_worker(args: argparse.Namespace) -> int:
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
                when = f"{run.next_sync_at:%Y-%m-%d %H:%M:%S} UTC" if run.next_sync_at else "never (invalid schedule)"
                print(f"bridge {run.bridge_key}: {outcome}; next sync {when}")
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
