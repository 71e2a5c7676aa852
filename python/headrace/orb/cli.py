"""``headrace-orb-worker``: orb-worker's command line and HTTP API on headrace.

orb-agent can launch it in orb-worker's place: it takes orb-worker's flags (``-s/--host``,
``-p/--port`` (8071), ``-t/--diode-target``, ``-c/--diode-client-id``, ``-k/--diode-client-secret``,
``-a/--diode-app-name-prefix``, ``-d/--dry-run``, ``-o/--dry-run-output-dir``, ``--otel-endpoint``,
``--otel-export-period``, ``--debug``, ``-V``; ``${VAR}`` wrapping resolves from the environment)
and adds ``--state URL`` (the run and policy store; default ``$HEADRACE_STATE_URL``, else
``sqlite://headrace-orb.db``), ``--outbox`` (deliver through the durable outbox) and
``--port-file PATH`` (writes the bound port, useful with ``-p 0``).
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

__all__ = ["build_parser", "main"]

DEFAULT_STATE_URL = "sqlite://headrace-orb.db"
#: Held chunks older than this are deleted at start (their run's process died mid-run).
ABANDONED_HELD_SECONDS = 24 * 3600.0


def _versions() -> str:
    from headrace import __version__

    try:
        from netboxlabs.diode.sdk.version import version_semver

        sdk = str(version_semver())  # type: ignore[no-untyped-call,unused-ignore]
    except ImportError:
        sdk = "not installed"
    return f"headrace-orb-worker version: {__version__},  Diode SDK version: {sdk}"


def build_parser() -> argparse.ArgumentParser:
    """orb-worker's argument parser, plus headrace's ``--state``, ``--outbox``, ``--port-file``."""
    parser = argparse.ArgumentParser(prog="headrace-orb-worker", description="Orb Worker Backend on headrace")
    parser.add_argument("-V", "--version", action="version", version=_versions())
    parser.add_argument("-s", "--host", default="0.0.0.0", help="Server host")
    parser.add_argument("-p", "--port", default=8071, type=int, help="Server port (0: any free port)")
    env_help = "Environment variable can be used by wrapping it in ${} (e.g. ${%s})"
    parser.add_argument("-t", "--diode-target", help="Diode target. " + env_help % "TARGET")
    parser.add_argument("-c", "--diode-client-id", help="Diode Client ID. " + env_help % "MY_CLIENT_ID")
    parser.add_argument("-k", "--diode-client-secret", help="Diode Client Secret. " + env_help % "MY_CLIENT_SECRET")
    parser.add_argument("-a", "--diode-app-name-prefix", help="Diode producer_app_name prefix")
    parser.add_argument("-d", "--dry-run", action="store_true", help="Run in dry-run mode, do not ingest data")
    parser.add_argument("-o", "--dry-run-output-dir", help="Output dir for dry-run mode. " + env_help % "OUTPUT_DIR")
    parser.add_argument("--otel-endpoint", help="OpenTelemetry exporter endpoint")
    parser.add_argument("--otel-export-period", type=int, default=60, help="Seconds between OpenTelemetry exports")
    parser.add_argument("--debug", action="store_true", help="Enable debug logging")
    parser.add_argument(
        "--state",
        default=os.environ.get("HEADRACE_STATE_URL", DEFAULT_STATE_URL),
        help="run and policy store URL (sqlite:// or postgres://); posted policies survive restarts",
    )
    parser.add_argument("--outbox", action="store_true", help="deliver chunks through the durable outbox")
    parser.add_argument("--port-file", help="write the bound port to this file once listening")
    return parser


def setup_metrics_export(endpoint: str, period: int) -> None:
    """Exports headrace's metrics (policy runs, run time, skipped ticks) to the OTLP/gRPC
    collector at ``endpoint`` every ``period`` seconds, as orb-worker does.

    The exporter comes with ``headrace[orb]``; without it this raises ``ConfigError`` rather than
    run without the metrics the caller asked for.
    """
    from headrace.errors import ConfigError

    if period <= 0:
        raise ConfigError(f"--otel-export-period must be a positive number of seconds, got {period}")
    try:
        from opentelemetry import metrics
        from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import (  # type: ignore[import-not-found,unused-ignore]
            OTLPMetricExporter,
        )
        from opentelemetry.sdk.metrics import MeterProvider
        from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader
    except ImportError as exc:
        raise ConfigError(
            f"--otel-endpoint {endpoint!r} needs the OpenTelemetry OTLP exporter, which is not installed "
            f"({exc.name or exc}): pip install 'headrace[orb]'"
        ) from None
    reader = PeriodicExportingMetricReader(OTLPMetricExporter(endpoint=endpoint), export_interval_millis=period * 1000)
    metrics.set_meter_provider(MeterProvider(metric_readers=[reader]))


def main(argv: Sequence[str] | None = None) -> int:
    """Runs the worker until SIGINT/SIGTERM; returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.debug else logging.INFO,
        format="%(levelname)s: %(name)s: %(message)s",
        force=True,
    )
    if not args.dry_run and not args.diode_target:
        parser.error("--diode-target required when not running with --dry-run")

    from headrace.errors import HeadraceError
    from headrace.orb.diode import resolve_env_value
    from headrace.orb.models import DiodeConfig
    from headrace.orb.package_finder import install_bundle_finder
    from headrace.orb.server import OrbHttpServer
    from headrace.orb.service import OrbWorker
    from headrace.orb.shim import install_worker_modules

    try:
        config = DiodeConfig(
            target=resolve_env_value(args.diode_target, "--diode-target"),
            prefix=args.diode_app_name_prefix,
            client_id=resolve_env_value(args.diode_client_id, "--diode-client-id"),
            client_secret=resolve_env_value(args.diode_client_secret, "--diode-client-secret"),
            dry_run=args.dry_run,
            dry_run_output_dir=resolve_env_value(args.dry_run_output_dir, "--dry-run-output-dir"),
        )
        if args.otel_endpoint:
            setup_metrics_export(args.otel_endpoint, args.otel_export_period)
    except HeadraceError as exc:
        parser.error(str(exc))
    install_worker_modules()
    install_bundle_finder()

    from headrace.state import StateBackend

    worker: Any = None
    try:
        state = StateBackend.connect(args.state)
        outbox = None
        if args.outbox:
            from headrace.outbox import OutboxStore

            outbox = OutboxStore.connect(args.state)
        worker = OrbWorker(diode=config, state=state, outbox=outbox)
        if outbox is not None:
            discarded = worker.manager.sink.discard_abandoned(ABANDONED_HELD_SECONDS)
            if discarded:
                logging.getLogger("headrace.orb").warning(
                    "deleted %d held chunk(s) of runs whose process died mid-run", discarded
                )
        restored = worker.restore()
        server = OrbHttpServer(worker, args.host, args.port)
    except Exception as exc:
        if worker is not None:
            worker.stop()
        print(f"ERROR: Unable to start worker backend: {exc}", file=sys.stderr)
        return 1
    log = logging.getLogger("headrace.orb")
    if restored:
        log.info("restored %d stored polic%s: %s", len(restored), "y" if len(restored) == 1 else "ies", restored)
    if args.port_file:
        Path(args.port_file).write_text(str(server.port))
    log.info("headrace-orb-worker listening on http://%s:%d", args.host, server.port)
    print(f"listening on port {server.port}", flush=True)

    stopping = threading.Event()

    def _stop(signum: int, _frame: Any) -> None:
        stopping.set()
        threading.Thread(target=server.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    try:
        server.serve_forever()
    finally:
        server.server_close()
        worker.stop()
    return 0


def entry_point() -> None:
    """Console-script entry point."""
    sys.exit(main())


if __name__ == "__main__":
    entry_point()
