"""`headrace metrics`: outbox and policy-run metrics as Prometheus text."""

from __future__ import annotations

import argparse

from headrace.outbox import OutboxStore


def _label(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def cmd_metrics(args: argparse.Namespace) -> int:
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
