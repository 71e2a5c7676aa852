"""headrace.pynenc against pynenc's SQLite state backend and pynenc-rustvello, one harness.

Workload (the issue's): N invocations, each ``upsert_invocations([inv])``, three
``add_history`` (registered, pending, running) and ``set_result``, through each backend's own
``BaseStateBackend`` API on a real pynenc 0.4 app; invocations are built before the clock
starts. Write-behind runs end with ``wait_for_all_async_operations()`` inside the timing.

Backends run in alternating order round after round (A B C …, then reversed), each on a fresh
database, and the report gives medians and ratios. Run with the release build in
``.venv-pynenc`` (``scripts/test-pynenc`` builds it)::

    .venv-pynenc/bin/python benches/bench_pynenc.py --invocations 2000 --rounds 5 \
        --pg-url postgres://postgres@127.0.0.1:5432/hr_pynenc

pynenc-rustvello 0.1.3 is used as installed when it imports (``pip install pynenc-rustvello``);
its rows are skipped, with the reason printed, when it does not.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from pynenc import Pynenc
from pynenc.arguments import Arguments
from pynenc.call import Call
from pynenc.invocation import DistributedInvocation
from pynenc.invocation.status import InvocationStatus, InvocationStatusRecord
from pynenc.runner.runner_context import RunnerContext

import headrace.pynenc  # noqa: F401  (registers HeadraceStateBackend)

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_pynenc_tasks import add

MEM_COMPONENTS = {
    "orchestrator_cls": "MemOrchestrator",
    "broker_cls": "MemBroker",
    "client_data_store_cls": "MemClientDataStore",
    "trigger_cls": "MemTrigger",
}


@dataclass
class Backend:
    name: str
    database: str
    config: Callable[[str], dict[str, Any]]  # tmp dir -> config values
    write_behind: bool = False


def shim_rustvello() -> list[str]:
    """pynenc-rustvello 0.1.3 predates part of pynenc 0.4's abstract API; fill what is missing
    with methods that raise (the workload never calls them) so its backends can be built.
    Returns the names filled in, printed with the results."""
    from pynenc_rustvello import state_backend as rust

    filled = []
    for cls in (rust.RustSqliteStateBackend, rust.RustPostgresStateBackend):
        for name in sorted(cls.__abstractmethods__):

            def missing(self: Any, *args: Any, _name: str = name, **kwargs: Any) -> Any:
                raise NotImplementedError(f"pynenc-rustvello has no {_name}")

            setattr(cls, name, missing)
            filled.append(f"{cls.__name__}.{name}")
        cls.__abstractmethods__ = frozenset()

        def store_runner_context(self: Any, ctx: Any) -> None:
            # rustvello >= 0.9 added runner_language/executor_kind before the parent ids,
            # which pynenc-rustvello 0.1.3 passes positionally: pass them by name instead.
            parent = ctx.parent_ctx
            self._rust.store_runner_context(
                ctx.runner_id,
                ctx.runner_cls,
                ctx.pid,
                ctx.hostname,
                ctx.thread_id,
                parent_runner_id=parent.runner_id if parent else None,
                parent_runner_cls=parent.runner_cls if parent else None,
            )

        cls._store_runner_context = store_runner_context
        filled.append(f"{cls.__name__}._store_runner_context (argument names)")
    return filled


def pg_schema_url(admin: str) -> str:
    import psycopg

    schema = f"bench_pynenc_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA {schema}")
    sep = "&" if "?" in admin else "?"
    return f"{admin}{sep}options=-c%20search_path%3D{schema}"


def backends(pg_url: str | None) -> list[Backend]:
    found = [
        Backend(
            "headrace durable",
            "sqlite",
            lambda d: {"state_backend_cls": "HeadraceStateBackend", "headrace_state_url": f"sqlite://{d}/h.db"},
        ),
        Backend(
            "headrace write-behind",
            "sqlite",
            lambda d: {
                "state_backend_cls": "HeadraceStateBackend",
                "headrace_state_url": f"sqlite://{d}/h.db",
                "headrace_durability": "write_behind",
            },
            write_behind=True,
        ),
        Backend(
            "pynenc SQLiteStateBackend",
            "sqlite",
            lambda d: {"state_backend_cls": "SQLiteStateBackend", "sqlite_db_path": f"{d}/p.db"},
        ),
    ]
    rustvello_error = None
    try:
        import pynenc_rustvello.state_backend  # noqa: F401
    except Exception as exc:  # pragma: no cover - depends on the installed peer
        rustvello_error = exc
    if rustvello_error is None:
        shims = shim_rustvello()
        if shims:
            print(f"# pynenc-rustvello shimmed (never called by the workload): {', '.join(shims)}")
        found.append(
            Backend(
                "rustvello",
                "sqlite",
                lambda d: {"state_backend_cls": "RustSqliteStateBackend", "sqlite_db_path": f"{d}/r.db"},
            )
        )
    else:
        print(f"pynenc-rustvello skipped: {rustvello_error!r}", file=sys.stderr)
    if pg_url:
        found += [
            Backend(
                "headrace durable",
                "postgres",
                lambda d: {"state_backend_cls": "HeadraceStateBackend", "headrace_state_url": pg_schema_url(pg_url)},
            ),
            Backend(
                "headrace write-behind",
                "postgres",
                lambda d: {
                    "state_backend_cls": "HeadraceStateBackend",
                    "headrace_state_url": pg_schema_url(pg_url),
                    "headrace_durability": "write_behind",
                },
                write_behind=True,
            ),
        ]
        if rustvello_error is None:
            found.append(
                Backend(
                    "rustvello",
                    "postgres",
                    lambda d: {"state_backend_cls": "RustPostgresStateBackend", "postgres_url": pg_schema_url(pg_url)},
                )
            )
    return found


def run_once(backend: Backend, invocations: int) -> float:
    """Seconds for the workload on a fresh database."""
    with tempfile.TemporaryDirectory() as tmp:
        app = Pynenc(config_values={"app_id": f"bench_{uuid.uuid4().hex[:8]}", **MEM_COMPONENTS, **backend.config(tmp)})
        state = app.state_backend
        add.app = app
        calls = [
            DistributedInvocation.isolated(Call(add, arguments=Arguments(kwargs={"a": n, "b": 1})))
            for n in range(invocations)
        ]
        ctx = RunnerContext(runner_cls="BenchRunner", runner_id="bench-runner")
        records = [
            InvocationStatusRecord(InvocationStatus.REGISTERED),
            InvocationStatusRecord(InvocationStatus.PENDING, "bench-runner"),
            InvocationStatusRecord(InvocationStatus.RUNNING, "bench-runner"),
        ]
        started = time.perf_counter()
        for inv in calls:
            state.upsert_invocations([inv])
            for record in records:
                state.add_history(inv.invocation_id, record, ctx)
            state.set_result(inv.invocation_id, inv.invocation_id[:8])
        if backend.write_behind:
            state.wait_for_all_async_operations()
        elapsed = time.perf_counter() - started
        # Everything written is there to read.
        last = calls[-1].invocation_id
        assert len(state.get_history(last)) == 3 and state.get_result(last) == last[:8], backend.name
        if hasattr(state, "close"):
            state.purge()
            state.close()
        return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--invocations", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--pg-url", default=os.environ.get("HEADRACE_TEST_PG_URL"))
    args = parser.parse_args()
    chosen = backends(args.pg_url)
    times: dict[tuple[str, str], list[float]] = {(b.name, b.database): [] for b in chosen}
    load_before = os.getloadavg()
    for round_number in range(args.rounds):
        order = chosen if round_number % 2 == 0 else list(reversed(chosen))
        for backend in order:
            times[(backend.name, backend.database)].append(run_once(backend, args.invocations))
    load_after = os.getloadavg()
    ops = args.invocations * 5
    print(
        f"# {args.invocations} invocations x (upsert + 3 history + result) = {ops} calls, "
        f"{args.rounds} alternating rounds, medians"
    )
    print(f"# load average (1, 5, 15 min): before {load_before}, after {load_after}; {os.cpu_count()} cores")
    print("| database | backend | median s | calls/s | vs rustvello | vs pynenc SQLite |")
    print("|---|---|---|---|---|---|")
    for (name, database), samples in times.items():
        median = statistics.median(samples)
        rust = times.get(("rustvello", database))
        pyn = times.get(("pynenc SQLiteStateBackend", "sqlite")) if database == "sqlite" else None
        vs_rust = f"{statistics.median(rust) / median:.2f}x" if rust else "-"
        vs_pyn = f"{statistics.median(pyn) / median:.2f}x" if pyn else "-"
        print(f"| {database} | {name} | {median:.3f} | {ops / median:,.0f} | {vs_rust} | {vs_pyn} |")


if __name__ == "__main__":
    main()
