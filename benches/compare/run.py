"""headrace side by side with the peers users would otherwise pick.

Each measurement runs in its own process, on a fresh database. Within a row the systems
alternate (headrace, peer, peer, headrace, peer, peer, ...) for ``--rounds`` rounds, so a load
spike on this shared machine hits every system alike; the report gives the median of each system
and the ratio headrace / peer (for throughput higher is better, for latency lower is better).

    python benches/compare/run.py --pg postgres://postgres@127.0.0.1:5432/DB [--rounds 3]

Use ``scripts/bench-compare`` rather than calling this directly: it builds headrace (release)
and installs the peers into ``.venv-compare``. Results: ``benches/results/compare.{md,csv,png}``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import hooks
import report

HERE = Path(__file__).resolve().parent


@dataclass
class Row:
    key: str
    group: str
    label: str
    kind: str
    params: dict[str, Any]
    peers: list[str]
    #: Target ratio headrace / peer, per peer (from issue #14).
    targets: dict[str, float] = field(default_factory=dict)
    higher_is_better: bool = True
    #: A smaller item count for the slowest peers, so one run stays under a minute.
    peer_n: dict[str, int] = field(default_factory=dict)
    results: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    unavailable: str | None = None
    errors: dict[str, str] = field(default_factory=dict)


def rows(quick: bool, scale: float = 1.0) -> list[Row]:
    def scaled(n: int) -> int:
        return max(100, int(n * scale))

    drain_n = scaled(2000 if quick else 10000)
    enqueue_n = scaled(5000 if quick else 50000)
    sqlite_n = scaled(5000 if quick else 50000)
    samples = scaled(20 if quick else 200)
    table: list[Row] = []
    for batch in (100, 10):
        for analyzed in (False, True):
            state = "analyzed" if analyzed else "fresh"
            table.append(
                Row(
                    key=f"pg-drain-b{batch}-{state}",
                    group="PostgreSQL drain (OutboxWorker, no-op handler)",
                    label=f"batch {batch}, {state} table",
                    kind="pg_drain",
                    params={"n": drain_n, "batch": batch, "analyzed": analyzed},
                    peers=["pgqueuer", "procrastinate", "raw", "headrace-durable"],
                    targets={"pgqueuer": 3.0, "raw": 0.8},
                    peer_n={"procrastinate": 200 if quick else 400},
                )
            )
    table += [
        Row(
            key="pg-enqueue",
            group="PostgreSQL bulk enqueue",
            label="batches of 1 000",
            kind="pg_enqueue",
            params={"n": enqueue_n},
            peers=["pgqueuer", "procrastinate"],
            targets={"pgqueuer": 1.5},
            peer_n={"procrastinate": 2000 if quick else 10000},
        ),
        Row(
            key="sqlite-drain",
            group="SQLite drain (OutboxWorker, no-op handler)",
            label="batch 100",
            kind="sqlite_drain",
            params={"n": sqlite_n, "batch": 100},
            peers=["raw", "huey"],
            targets={"raw": 0.5},
            peer_n={"huey": 300 if quick else 1000},
        ),
        Row(
            key="sqlite-enqueue",
            group="SQLite bulk enqueue",
            label="batches of 1 000",
            kind="sqlite_enqueue",
            params={"n": sqlite_n},
            peers=["executemany"],
            targets={"executemany": 1.0},
        ),
        Row(
            key="pg-latency",
            group="PostgreSQL idle latency, enqueue to handler (LISTEN/NOTIFY)",
            label="p50 (p99 in the CSV)",
            kind="pg_latency",
            params={"samples": samples},
            peers=["pgqueuer"],
            higher_is_better=False,
        ),
        Row(
            key="state",
            group="State backend (pynenc workload, SQLite, durable per call)",
            label="invocations (upsert, 3 history, result)",
            kind="state",
            params={"n": scaled(300 if quick else 2000)},
            peers=["pynenc-sqlite", "pynenc-rustvello", "headrace-write-behind"],
        ),
        Row(
            key="orb",
            group="Policy runner (orb-worker backend, list, dry-run output)",
            label="devices",
            kind="orb",
            params={"n": scaled(10000 if quick else 100000)},
            peers=["orb-worker"],
        ),
        Row(
            key="django",
            group="Django: one Tasks enqueue per transaction.atomic (PostgreSQL)",
            label="transactions",
            kind="django",
            params={"n": scaled(200 if quick else 2000)},
            peers=["django-tasks-db"],
        ),
    ]
    return table


def run_one(kind: str, system: str, params: dict[str, Any], pg_url: str) -> dict[str, Any]:
    env = dict(os.environ, HEADRACE_BENCH_PG_URL=pg_url)
    done = subprocess.run(
        [sys.executable, str(HERE / "child.py"), kind, system, json.dumps(params)],
        capture_output=True,
        text=True,
        env=env,
        timeout=900,
    )
    if done.returncode != 0:
        raise RuntimeError(done.stderr.strip().splitlines()[-1] if done.stderr.strip() else f"exit {done.returncode}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pg", default=os.environ.get("HEADRACE_TEST_PG_URL"), required=False)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="small sizes: a smoke run, not a measurement")
    parser.add_argument("--scale", type=float, default=1.0, help="multiply every item count (time budget)")
    parser.add_argument("--only", default="", help="comma-separated row keys (default: every row)")
    parser.add_argument("--out", type=Path, default=HERE.parent / "results")
    parser.add_argument("--strict", action="store_true", help="exit 1 when any system fails to run (CI smoke)")
    args = parser.parse_args()
    if not args.pg:
        parser.error("give --pg postgres://... (or set HEADRACE_TEST_PG_URL)")
    if args.rounds < 3 and not args.quick:
        parser.error("--rounds must be >= 3 for a measurement (use --quick for a smoke run)")
    wanted = {key for key in args.only.split(",") if key}
    table = [row for row in rows(args.quick, args.scale) if not wanted or row.key in wanted]
    for row in table:
        if row.kind in hooks.NEEDS:
            row.unavailable = hooks.available(row.kind)
            if row.unavailable:
                print(f"{row.key}: skipped: {row.unavailable}", flush=True)
                continue
        systems = ["headrace", *row.peers]
        for round_no in range(args.rounds):
            for system in systems if round_no % 2 == 0 else list(reversed(systems)):
                if system in row.errors:
                    continue
                try:
                    params = dict(row.params)
                    if system in row.peer_n:
                        params["n"] = row.peer_n[system]
                    result = run_one(row.kind, system, params, args.pg)
                except Exception as exc:  # a peer that fails to run is reported, not fatal
                    row.errors[system] = str(exc)
                    print(f"{row.key} {system}: FAILED: {exc}", flush=True)
                    continue
                row.results.setdefault(system, []).append(result)
                print(f"{row.key} round {round_no + 1} {system}: {result['value']:,.2f} {result['unit']}", flush=True)
        # Written after every row, so an interrupted run still leaves the rows it finished.
        summary = report.summarise([r for r in table if r.results or r.unavailable], statistics.median)
        report.write(summary, args.out, pg_url=args.pg, rounds=args.rounds, quick=args.quick)
    summary = report.summarise(table, statistics.median)
    report.write(summary, args.out, pg_url=args.pg, rounds=args.rounds, quick=args.quick)
    print(report.markdown_table(summary))
    failures = [f"{row.key} {system}" for row in table for system in row.errors]
    if args.strict and failures:
        raise SystemExit(f"failed to run: {', '.join(failures)}")


if __name__ == "__main__":
    main()
