"""orb-discovery's own test backends, unchanged, under ``headrace-orb-worker`` and under the real
orb-worker: each system serves its HTTP API, gets the same policy document, and sends to its own
recording Diode server. Prints what each server received and fails when headrace's requests
differ from orb-worker's (run ids, request ids and timestamps aside), or when headrace fails a
backend that orb-worker runs.

The backends are not copied into this repository; this reads them from a checkout of
https://github.com/netboxlabs/orb-discovery (``worker/tests/``). Run it with
``scripts/test-orb-upstream PATH``.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from diode_server import RecordingDiode
from orb_helpers import ORB_VENV, ROOT, call

SCOPE = "    scope:\n      target: 10.0.0.1\n      port: 22\n"


@dataclass(frozen=True)
class Case:
    """One upstream backend: its directory under ``worker/tests``, the package a policy names,
    and how many entities a run of it yields."""

    directory: str
    package: str
    entities: int


CASES = [
    Case("nbl-custom", "nbl_custom", 100_000),
    Case("nbl-custom-legacy", "nbl_custom_legacy", 1),
    # mock_custom's package has no __init__: its backend is in nbl_custom.impl.
    Case("mock_custom", "nbl_custom.impl", 1),
]


@dataclass
class Outcome:
    """What one system did with one backend."""

    post: tuple[int, Any]
    requests: list[Any]
    errors: list[str]
    seconds: float


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def _command(system: str, port: int, target: str, state: Path) -> list[str]:
    if system == "headrace":
        head = [str(ROOT / ".venv/bin/python"), "-m", "headrace.orb.cli", "--state", f"sqlite://{state}"]
    else:
        head = [str(ORB_VENV / "bin" / "orb-worker")]
    return [*head, "-s", "127.0.0.1", "-p", str(port), "-t", target, "-c", "client", "-k", "${SECRET}", "-a", "agent"]


def _wait_for_port(process: subprocess.Popen[str], port: int) -> None:
    deadline = time.monotonic() + 60
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            if process.poll() is not None or time.monotonic() > deadline:
                process.kill()
                raise SystemExit(f"the worker did not start: {process.communicate()}") from None
            time.sleep(0.1)


def run(system: str, backends: Path, case: Case, scratch: Path) -> Outcome:
    """Serves ``case`` with ``system`` and records what reaches Diode."""
    python_path = [str(backends / case.directory)] + ([str(ROOT / "python")] if system == "headrace" else [])
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(python_path), "SECRET": "s3cret"}
    name = case.directory.replace("-", "_")
    document = f"policies:\n  {name}:\n    config:\n      package: {case.package}\n      custom: c\n{SCOPE}"
    with RecordingDiode() as diode:
        port = _free_port()
        command = _command(system, port, diode.target, scratch / f"{system}-{name}.db")
        process = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        _wait_for_port(process, port)
        started = time.monotonic()
        post = call(port, "POST", "/api/v1/policies", document)
        deadline = started + (120 if case.entities > 1 else 20)
        while post[0] == 201 and len(diode.entities()) < case.entities and time.monotonic() < deadline:
            time.sleep(0.1)
        seconds = time.monotonic() - started
        process.send_signal(signal.SIGTERM)
        try:
            _, err = process.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            process.kill()
            _, err = process.communicate()
        errors = [line.strip() for line in err.splitlines() if "ERROR" in line]
        return Outcome(post, list(diode.requests), errors, seconds)


def _comparable(requests: list[Any]) -> tuple[set[tuple[Any, ...]], list[bytes]]:
    """The requests' envelopes and their entities in order, without what differs between runs
    (run id, timestamps) or between chunkings (orb-worker overshoots its size bound, headrace
    does not, so a chunk may end one entity earlier); checks the run id's placement on the way."""
    envelopes, entities = set(), []
    for recorded in requests:
        request = recorded.request
        run_id = request.metadata["run_id"]
        metadata = tuple(sorted((k, v) for k, v in request.metadata.items() if k != "run_id"))
        envelopes.add((request.producer_app_name, request.producer_app_version, request.sdk_name, metadata))
        for entity in request.entities:
            member = getattr(entity, entity.WhichOneof("entity"))
            assert member.metadata["run_id"] == run_id, "the run id is not in the entity's metadata"
            copy = type(entity)()
            copy.CopyFrom(entity)
            del getattr(copy, copy.WhichOneof("entity")).metadata["run_id"]
            copy.ClearField("timestamp")  # set when the backend built the entity
            entities.append(copy.SerializeToString(deterministic=True))
    return envelopes, entities


def _difference(orb: list[Any], ours: list[Any]) -> str | None:
    """How headrace's requests differ from orb-worker's, or None."""
    (orb_envelopes, orb_entities), (our_envelopes, our_entities) = _comparable(orb), _comparable(ours)
    if orb_envelopes != our_envelopes:
        return f"request envelopes {sorted(our_envelopes)} against orb-worker's {sorted(orb_envelopes)}"
    if len(orb_entities) != len(our_entities):
        return f"{len(our_entities)} entities against orb-worker's {len(orb_entities)}"
    for index, (theirs, mine) in enumerate(zip(orb_entities, our_entities, strict=True)):
        if theirs != mine:
            return f"entity {index} differs: {mine[:200]!r} against orb-worker's {theirs[:200]!r}"
    return None


def main() -> int:
    if len(sys.argv) != 2:
        print("usage: upstream_check.py PATH-TO-orb-discovery-CHECKOUT", file=sys.stderr)
        return 2
    backends = Path(sys.argv[1]) / "worker" / "tests"
    if not (backends / "nbl-custom").is_dir():
        print(f"{backends} has no nbl-custom: is {sys.argv[1]} a checkout of orb-discovery?", file=sys.stderr)
        return 2
    failures = []
    with tempfile.TemporaryDirectory() as scratch:
        for case in CASES:
            outcomes = {system: run(system, backends, case, Path(scratch)) for system in ("orb-worker", "headrace")}
            for system, outcome in outcomes.items():
                received = sum(len(r.request.entities) for r in outcome.requests)
                print(
                    f"{case.directory:18} {system:10} POST {outcome.post[0]} {outcome.post[1]['detail']!s:.60}"
                    f" | {received} entities in {len(outcome.requests)} requests, {outcome.seconds:.1f} s"
                )
                for line in outcome.errors[:2]:
                    print(f"{'':30}{line[:150]}")
            orb, ours = outcomes["orb-worker"], outcomes["headrace"]
            if orb.requests:
                difference = _difference(orb.requests, ours.requests)
                if difference is not None:
                    failures.append(f"{case.directory}: {difference}")
            elif ours.requests:
                _comparable(ours.requests)  # the run id's placement is still checked
                print(f"{'':30}orb-worker sent nothing; headrace did")
    for failure in failures:
        print(f"FAILED {failure}", file=sys.stderr)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
