"""orb-worker 1.16 against headrace on the same orb-worker backend, side by side.

The backend is tests/orb/backends/orb_describe_backend (nbl-custom's shape: a list of diode SDK
``Entity(device=Device(...))`` messages, unchanged source), at N devices, as a list and as a
generator. Each system runs in its own process and virtualenv (orb-worker in ``.venv-orb``,
headrace in ``.venv``) into (a) the SDK's dry-run client writing to a directory and (b) a
recording ``diode.v1`` gRPC server (tests/orb/diode_server.py, in this harness process). A run
is timed from the backend call to the last request acknowledged; peak RSS is the child's.
orb-worker is driven through its own ``PolicyRunner.run(client, backend, policy)``, the method
its scheduler calls; headrace through ``PolicyManager.run_now`` with a ``DiodeSink``.

Usage: python benches/bench_orb.py [--devices 100000] [--repeat 3]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TESTS = ROOT / "tests" / "orb"
sys.path.insert(0, str(TESTS))

ORB_CHILD = r"""
import json, resource, sys, time
from worker.models import DiodeConfig, Policy
from worker.policy.run import RunStore
from worker.policy.runner import PolicyRunner
target, devices, generator, out = sys.argv[1], int(sys.argv[2]), sys.argv[3] == "1", sys.argv[4]
policy = Policy.model_validate({"config": {"package": "orb_describe_backend", "custom": "x",
    "devices": devices, "generator": generator, "schedule": "0 0 1 1 *"}, "scope": {"target": "h", "port": 22}})
config = DiodeConfig(target=None if target == "dry" else target, client_id=None if target == "dry" else "i",
    client_secret=None if target == "dry" else "s", dry_run=target == "dry", dry_run_output_dir=out)
runner = PolicyRunner()
runner.setup("bench", config, policy, RunStore())
from orb_describe_backend import DescribeBackend
backend = DescribeBackend()
base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
start = time.perf_counter()
runner.run(runner._diode_client, backend, policy)
elapsed = time.perf_counter() - start
run = runner.run_store.get_runs_for_policy("bench")[0]
runner.stop()
print(json.dumps({"seconds": elapsed, "status": run.status.value, "entities": run.entity_count,
    "base_rss_kb": base, "reason": run.reason}))
"""

HEADRACE_CHILD = r"""
import json, resource, sys, time
from headrace.orb import DiodeSink
from headrace.runner import PolicyManager
target, devices, generator, out = sys.argv[1], int(sys.argv[2]), sys.argv[3] == "1", sys.argv[4]
sink = DiodeSink(None, dry_run=True, dry_run_output_dir=out) if target == "dry" else DiodeSink(target, "i", "s")
manager = PolicyManager(sink=sink)
manager.start_policies({"policies": {"bench": {"config": {"package": "orb_describe_backend", "custom": "x",
    "devices": devices, "generator": generator}, "scope": {"target": "h", "port": 22}}}}, schedule=False)
sink.client("describe_app", "1.2.3")
base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
start = time.perf_counter()
run = manager.run_now("bench")
elapsed = time.perf_counter() - start
manager.stop()
print(json.dumps({"seconds": elapsed, "status": run.status, "entities": run.entity_count,
    "base_rss_kb": base, "reason": run.reason}))
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--devices", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    orb_python = ROOT / ".venv-orb" / "bin" / "python"
    headrace_python = ROOT / ".venv" / "bin" / "python"
    from diode_server import RecordingDiode

    rows = []
    for generator in (False, True):
        for sink in ("dry", "grpc"):
            timings: dict[str, list[float]] = {"orb": [], "headrace": []}
            peaks: dict[str, list[float]] = {"orb": [], "headrace": []}
            for _ in range(args.repeat):
                # Each child's peak RSS is measured alone, by a wrapper process of its own.
                for system, python, code in (
                    ("orb", orb_python, ORB_CHILD),
                    ("headrace", headrace_python, HEADRACE_CHILD),
                ):
                    if sink == "grpc":
                        with RecordingDiode() as server:
                            report = _isolated(python, code, server.target, args.devices, generator)
                            assert sum(len(r.request.entities) for r in server.requests) == args.devices
                    else:
                        report = _isolated(python, code, "dry", args.devices, generator)
                    timings[system].append(report["seconds"])
                    peaks[system].append(report["peak_rss_kb"])
            orb_s, hr_s = statistics.median(timings["orb"]), statistics.median(timings["headrace"])
            orb_rss, hr_rss = statistics.median(peaks["orb"]), statistics.median(peaks["headrace"])
            row = {
                "backend": "generator" if generator else "list",
                "sink": "dry-run" if sink == "dry" else "gRPC",
                "orb_s": round(orb_s, 2),
                "headrace_s": round(hr_s, 2),
                "speedup": round(orb_s / hr_s, 2),
                "orb_peak_mib": round(orb_rss / 1024, 1),
                "headrace_peak_mib": round(hr_rss / 1024, 1),
                "rss_ratio": round(hr_rss / orb_rss, 2),
            }
            rows.append(row)
            print(json.dumps(row), flush=True)
    print("\n| backend | sink | orb-worker s | headrace s | speed-up | orb peak MiB | headrace peak MiB | RSS ratio |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['backend']} | {r['sink']} | {r['orb_s']} | {r['headrace_s']} | x{r['speedup']} | "
            f"{r['orb_peak_mib']} | {r['headrace_peak_mib']} | {r['rss_ratio']} |"
        )


def _isolated(python: Path, code: str, target: str, devices: int, generator: bool) -> dict[str, float]:
    """Runs one child under a wrapper process that reports the child's own peak RSS (its
    ``RUSAGE_CHILDREN``), so that earlier, larger children never mask it."""
    wrapper = (
        "import json, resource, subprocess, sys\n"
        "r = subprocess.run(sys.argv[1:], capture_output=True, text=True)\n"
        "sys.stderr.write(r.stderr)\n"
        "out = r.stdout.strip().splitlines()[-1] if r.returncode == 0 else '{}'\n"
        "d = json.loads(out); d['peak_rss_kb'] = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss\n"
        "d['rc'] = r.returncode; print(json.dumps(d))\n"
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(TESTS / "backends"), str(ROOT / "python")])}
    with tempfile.TemporaryDirectory() as out:
        result = subprocess.run(
            [
                sys.executable,
                "-c",
                wrapper,
                str(python),
                "-c",
                code,
                target,
                str(devices),
                "1" if generator else "0",
                out,
            ],
            env=env,
            capture_output=True,
            text=True,
            timeout=3600,
        )
        report = json.loads(result.stdout.strip().splitlines()[-1])
        if report.get("rc") != 0 or report.get("status") != "completed" or report.get("entities") != devices:
            raise RuntimeError(f"{python}: {report} {result.stderr[-3000:]}")
    return report


if __name__ == "__main__":
    main()
