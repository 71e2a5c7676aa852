"""Helpers shared by the commands: the default database and plain-text tables."""

from __future__ import annotations

import os
from collections.abc import Sequence

DEFAULT_DB = "sqlite://headrace.db"


def default_db() -> str:
    return os.environ.get("HEADRACE_DATABASE_URL", DEFAULT_DB)


def print_table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> None:
    cells = [[str(c) for c in headers]] + [["" if c is None else str(c) for c in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    for row in cells:
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip())
