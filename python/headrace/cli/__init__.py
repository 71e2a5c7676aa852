"""The ``headrace`` command line: one module per command group, :func:`main` in ``main.py``."""

from __future__ import annotations

from headrace.cli.common import DEFAULT_DB
from headrace.cli.main import build_parser, main

__all__ = ["DEFAULT_DB", "build_parser", "main"]
