"""Writes the comparison as Markdown, CSV and one PNG chart (ratios headrace / peer)."""

from __future__ import annotations

import csv
import os
import platform
import statistics
from collections.abc import Callable
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Any

RATIO = "\u00d7"  # MULTIPLICATION SIGN, as in "2.50x"
PEER_PACKAGES = ["pgqueuer", "procrastinate", "huey", "pynenc", "pynenc-rustvello", "django-tasks", "django-tasks-db"]


def summarise(table: list[Any], median: Callable[[list[float]], float]) -> list[dict[str, Any]]:
    """One line per row and system: median, runs, ratio headrace / system, target and verdict."""
    lines: list[dict[str, Any]] = []
    for row in table:
        if row.unavailable:
            lines.append({"row": row.key, "group": row.group, "label": row.label, "note": row.unavailable})
            continue
        medians = {system: median([r["value"] for r in runs]) for system, runs in row.results.items()}
        ours = medians.get("headrace")
        for system in ["headrace", *row.peers]:
            if system in row.errors:
                lines.append(
                    {
                        "row": row.key,
                        "group": row.group,
                        "label": row.label,
                        "system": system,
                        "note": f"failed: {row.errors[system]}",
                    }
                )
                continue
            if system not in medians:
                continue
            runs = row.results[system]
            ratio = None if system == "headrace" or ours is None else ours / medians[system]
            target = row.targets.get(system)
            verdict = ""
            if ratio is not None and target is not None:
                verdict = "met" if ratio >= target else "MISSED"
            p99s = [r["p99"] for r in runs if "p99" in r]
            lines.append(
                {
                    "row": row.key,
                    "group": row.group,
                    "label": row.label,
                    "system": system,
                    "median": medians[system],
                    "unit": runs[0]["unit"],
                    "p99_median": statistics.median(p99s) if p99s else None,
                    "runs": [r["value"] for r in runs],
                    "items": runs[0].get("count"),
                    "ratio": ratio,
                    "higher_is_better": row.higher_is_better,
                    "target": target,
                    "verdict": verdict,
                }
            )
    return lines


def machine(pg_url: str) -> dict[str, str]:
    import psycopg

    with psycopg.connect(pg_url) as conn:
        (pg_version,) = conn.execute("SHOW server_version").fetchone() or ("?",)
    versions = []
    for package in PEER_PACKAGES:
        try:
            versions.append(f"{package} {metadata.version(package)}")
        except metadata.PackageNotFoundError:
            pass
    try:  # orb-worker lives in a venv of its own (hooks.ORB_PYTHON)
        import subprocess

        from hooks import ORB_PYTHON

        found = subprocess.run(
            [str(ORB_PYTHON), "-c", "from importlib.metadata import version; print(version('netboxlabs-orb-worker'))"],
            capture_output=True,
            text=True,
            timeout=60,
        )
        if found.returncode == 0:
            versions.append(f"orb-worker {found.stdout.strip()}")
    except OSError:
        pass
    load = os.getloadavg()
    return {
        "cores": str(os.cpu_count()),
        "postgresql": pg_version,
        "python": platform.python_version(),
        "load_average_at_end": f"{load[0]:.1f} {load[1]:.1f} {load[2]:.1f}",
        "peers": ", ".join(versions),
        "date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
    }


def _number(value: float | None, unit: str = "") -> str:
    if value is None:
        return ""
    if unit == "ms":
        return f"{value:.2f} ms"
    return f"{value:,.0f}" + (f" {unit}" if unit else "")


def markdown_table(lines: list[dict[str, Any]]) -> str:
    out = [
        "| Row | System | Median | Runs | Items per run | headrace / system | Target | |",
        "|---|---|---:|---|---:|---:|---:|---|",
    ]
    for line in lines:
        where = f"{line['group']}: {line['label']}"
        if "median" not in line:
            out.append(f"| {where} | {line.get('system', '')} | | | | | | {line['note']} |")
            continue
        runs = ", ".join(_number(v) if line["unit"] != "ms" else f"{v:.2f}" for v in line["runs"])
        ratio = ""
        if line["ratio"] is not None:
            ratio = f"{line['ratio']:.2f}{RATIO}" + ("" if line["higher_is_better"] else " (lower is better)")
        target = f"≥ {line['target']:.1f}{RATIO}" if line["target"] is not None else ""
        median = _number(line["median"], line["unit"])
        if line["p99_median"] is not None:
            median += f" (p99 {line['p99_median']:.2f} ms)"
        items = f"{line['items']:,}" if line.get("items") else ""
        out.append(
            f"| {where} | {line['system']} | {median} | {runs} | {items} | {ratio} | {target} | {line['verdict']} |"
        )
    return "\n".join(out)


def write(lines: list[dict[str, Any]], out: Path, *, pg_url: str, rounds: int, quick: bool) -> None:
    out.mkdir(parents=True, exist_ok=True)
    info = machine(pg_url)
    stem = "compare-quick" if quick else "compare"
    header = (
        f"# headrace side by side ({'smoke run, not a measurement' if quick else 'measurement'})\n\n"
        f"Machine: {info['cores']} cores, PostgreSQL {info['postgresql']}, Python {info['python']}; "
        f"load average at the end {info['load_average_at_end']}; {info['date']}.\n"
        f"Peers: {info['peers']}.\n"
        f"Each system ran {rounds} times per row, alternating with its peers; medians shown, "
        "ratios are headrace / peer.\n\n"
    )
    (out / f"{stem}.md").write_text(header + markdown_table(lines) + "\n")
    with (out / f"{stem}.csv").open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(
            [
                "row",
                "label",
                "system",
                "median",
                "unit",
                "p99_median_ms",
                "runs",
                "items_per_run",
                "ratio_headrace_over_system",
                "higher_is_better",
                "target",
                "verdict",
                "note",
                "cores",
                "postgresql",
                "load_average_at_end",
                "date",
            ]
        )
        for line in lines:
            writer.writerow(
                [
                    line["row"],
                    line["label"],
                    line.get("system", ""),
                    f"{line['median']:.3f}" if "median" in line else "",
                    line.get("unit", ""),
                    f"{line['p99_median']:.3f}" if line.get("p99_median") is not None else "",
                    " ".join(f"{v:.3f}" for v in line.get("runs", [])),
                    line.get("items") or "",
                    f"{line['ratio']:.3f}" if line.get("ratio") is not None else "",
                    line.get("higher_is_better", ""),
                    line.get("target") or "",
                    line.get("verdict", ""),
                    line.get("note", ""),
                    info["cores"],
                    info["postgresql"],
                    info["load_average_at_end"],
                    info["date"],
                ]
            )
    if not quick:
        chart(lines, out / "compare.png", info)


def chart(lines: list[dict[str, Any]], path: Path, info: dict[str, str]) -> None:
    """One horizontal bar per (row, peer): the ratio headrace / peer, targets as ticks."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    bars = [line for line in lines if line.get("ratio") is not None]
    labels = [f"{line['row']} vs {line['system']}" for line in bars]
    ratios = [line["ratio"] for line in bars]
    colors = []
    for line in bars:
        good = line["ratio"] >= 1 if line["higher_is_better"] else line["ratio"] <= 1
        colors.append("#2b8a3e" if good else "#c92a2a")
    fig, ax = plt.subplots(figsize=(8, 0.32 * len(bars) + 1.4), dpi=80)
    positions = range(len(bars))
    ax.barh(list(positions), ratios, color=colors)
    for pos, line in zip(positions, bars, strict=True):
        if line["target"] is not None:
            ax.plot([line["target"]] * 2, [pos - 0.4, pos + 0.4], color="black", linewidth=2)
    ax.axvline(1.0, color="grey", linewidth=0.8, linestyle="--")
    ax.set_xscale("log")
    ax.set_yticks(list(positions), labels, fontsize=8)
    ax.invert_yaxis()
    ax.set_xlabel("headrace / peer (log scale; black tick: target; latency row: lower is better)", fontsize=8)
    ax.set_title(
        f"headrace vs peers — {info['cores']} cores, PostgreSQL {info['postgresql']}, median of alternating runs",
        fontsize=9,
    )
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
