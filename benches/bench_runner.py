"""Policy-runner throughput and memory benchmark.

A backend yields N device-like entities (nested dicts of ~600 bytes of JSON). Measured:

* **headrace**: ``PolicyManager.run_now`` with a ``NullSink`` — run recorded, each entity encoded
  once in Rust with ``metadata.run_id`` stamped (the caller's dict untouched), exact-size chunking
  at 3 MiB, chunks handed to the sink.
* **baseline**: the same work in pure Python in the same process — a copy of each entity with
  ``metadata.run_id`` stamped, ``json.dumps`` per entity for its size, greedy 3 MiB packing, and
  ``json.dumps`` per chunk (orb-worker's approach).

Both consume the same pre-built entities, so building the dicts is not part of either figure.
Memory: peak RSS of a headrace run of 1 000 000 entities vs 100 000, each in a fresh subprocess
whose backend *generates* entities lazily (a streaming run must not grow with the run's size).

Usage: python benches/bench_runner.py [--entities 200000] [--repeat 3] [--skip-memory]
Targets: speed-up >= 4x; RSS(1M) / RSS(100k) <= 1.5.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import textwrap
import time
import uuid

CHUNK_BYTES = 3 * 1024 * 1024

BACKEND_MODULE = textwrap.dedent(
    """
    from headrace import Backend, Metadata

    ENTITIES = []  # set by the benchmark for the throughput run

    def device(i):
        return {
            "name": f"device-{i:07d}",
            "device_type": {"model": "DCS-7280SR-48C6", "manufacturer": {"name": "Arista"}},
            "platform": {"name": "eos", "manufacturer": {"name": "Arista"}},
            "role": {"name": "leaf"},
            "serial": f"JPE{i:010d}",
            "status": "active",
            "site": {"name": f"site-{i % 50:03d}", "region": "eu-west"},
            "primary_ip4": f"10.{(i >> 16) & 255}.{(i >> 8) & 255}.{i & 255}/32",
            "tags": ["discovered", "network", "bench"],
            "interfaces": [
                {"name": "Ethernet1", "type": "100gbase-x-qsfp28", "enabled": True, "mtu": 9214},
                {"name": "Management1", "type": "1000base-t", "enabled": True, "mtu": 1500},
            ],
            "custom_fields": {"rack": f"R{i % 40:02d}", "u_height": 1, "monitored": True},
        }

    class BenchBackend(Backend):
        @classmethod
        def describe(cls):
            return Metadata(name="bench", app_name="bench", app_version="1.0")

        def run(self, policy_name, policy, **kwargs):
            if policy.config.mode == "prebuilt":
                return iter(ENTITIES)
            return (device(i) for i in range(policy.config.count))
    """
)


def install_backend(directory: str) -> None:
    with open(os.path.join(directory, "bench_runner_backend.py"), "w") as f:
        f.write(BACKEND_MODULE)
    sys.path.insert(0, directory)


def baseline(entities: list[dict], run_id: str) -> tuple[int, int]:
    """orb-worker-style pure Python: stamp run_id (copy), size each entity, pack, dump chunks."""
    metadata = {
        "policy_name": "bench",
        "worker_backend": "bench",
        "app_name": "bench",
        "app_version": "1.0",
        "run_id": run_id,
    }
    chunks = 0
    sent = 0
    current: list[dict] = []
    size = 0
    compact = (",", ":")
    envelope = len(json.dumps({"metadata": {**metadata, "chunk_index": 0}, "entities": []}, separators=compact))

    def flush() -> None:
        nonlocal chunks, sent, current, size
        payload = json.dumps({"metadata": {**metadata, "chunk_index": chunks}, "entities": current}, separators=compact)
        assert len(payload) <= CHUNK_BYTES + 16
        chunks += 1
        sent += len(current)
        current, size = [], 0

    for entity in entities:
        stamped = {**entity, "metadata": {**(entity.get("metadata") or {}), "run_id": run_id}}
        n = len(json.dumps(stamped, separators=compact))
        if current and envelope + size + n + len(current) > CHUNK_BYTES:
            flush()
        current.append(stamped)
        size += n
    if current:
        flush()
    return chunks, sent


def throughput(n: int, repeat: int) -> None:
    import bench_runner_backend as backend

    from headrace import NullSink, PolicyManager

    backend.ENTITIES = [backend.device(i) for i in range(n)]
    avg = sum(len(json.dumps(e)) for e in backend.ENTITIES[:1000]) / 1000
    print(f"entities: {n}, average encoded size {avg:.0f} bytes (before run_id)")

    sink = NullSink()
    manager = PolicyManager(sink=sink, chunk_bytes=CHUNK_BYTES)
    manager.start_policies(
        {"policies": {"bench": {"config": {"package": "bench_runner_backend", "mode": "prebuilt"}}}},
        schedule=False,
    )
    best_rust = best_py = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        run = manager.run_now("bench")
        best_rust = min(best_rust, time.perf_counter() - t0)
        assert run.status == "completed" and run.entity_count == n, run

        t0 = time.perf_counter()
        chunks, sent = baseline(backend.ENTITIES, str(uuid.uuid4()))
        best_py = min(best_py, time.perf_counter() - t0)
        assert sent == n
    assert "metadata" not in backend.ENTITIES[0], "the caller's entities must not be mutated"
    manager.stop()
    rust_chunks = run.metadata["chunk_count"]
    print(f"headrace  : {n / best_rust:>12,.0f} entities/s  ({best_rust:.3f} s, {rust_chunks} chunks)")
    print(f"baseline  : {n / best_py:>12,.0f} entities/s  ({best_py:.3f} s, {chunks} chunks)")
    print(f"speed-up  : {best_py / best_rust:.2f}x  (target >= 4x)")


def peak_rss_kib() -> int:
    """This process's peak RSS (VmHWM: unlike ru_maxrss, not inherited from a forking parent)."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def rss_child(n: int) -> None:
    from headrace import NullSink, PolicyManager

    manager = PolicyManager(sink=NullSink(), chunk_bytes=CHUNK_BYTES)
    manager.start_policies(
        {"policies": {"mem": {"config": {"package": "bench_runner_backend", "mode": "generate", "count": n}}}},
        schedule=False,
    )
    run = manager.run_now("mem")
    assert run.status == "completed" and run.entity_count == n, run
    print(peak_rss_kib())


def memory() -> None:
    def peak(n: int) -> int:
        out = subprocess.run(
            [sys.executable, __file__, "--rss-child", str(n)],
            check=True,
            capture_output=True,
            text=True,
        )
        return int(out.stdout.strip().splitlines()[-1])

    small, large = peak(100_000), peak(1_000_000)
    print(
        f"peak RSS  : 100k entities {small / 1024:.1f} MiB, 1M entities {large / 1024:.1f} MiB, "
        f"ratio {large / small:.2f} (target <= 1.5)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--entities", type=int, default=200_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--skip-memory", action="store_true")
    parser.add_argument("--rss-child", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    directory = tempfile.mkdtemp(prefix="headrace-bench-")
    install_backend(directory)
    if args.rss_child:
        rss_child(args.rss_child)
        return
    throughput(args.entities, args.repeat)
    if not args.skip_memory:
        memory()


if __name__ == "__main__":
    main()
