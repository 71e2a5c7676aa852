"""Shared helpers of the orb-worker drop-in tests (a module name of its own, so that these
tests run alongside other test directories' conftest modules)."""

from __future__ import annotations

import json
import os
import sys
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from headrace.testing.postgres import fresh_pg_url as _fresh_pg_url

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
BACKENDS = HERE / "backends"
if str(BACKENDS) not in sys.path:
    sys.path.insert(0, str(BACKENDS))

#: The virtualenv holding the real orb-worker 1.16 (made by scripts/test-orb).
ORB_VENV = Path(os.environ.get("HEADRACE_ORB_VENV", ROOT / ".venv-orb"))

YAML = "application/x-yaml"


def fresh_pg_url() -> str:
    """A URL on a new, empty PostgreSQL schema (skips only outside CI without a server)."""
    return _fresh_pg_url("headrace_orb")


def orb_python() -> Path:
    """The real orb-worker's interpreter (skips outside CI when it is missing)."""
    python = ORB_VENV / "bin" / "python"
    if not python.exists():
        if os.environ.get("CI") == "true":
            raise RuntimeError(f"{python} is missing: scripts/test-orb creates it")
        pytest.skip(f"the real orb-worker venv {ORB_VENV} is missing (scripts/test-orb creates it)")
    return python


def call(
    port: int, method: str, path: str, body: str | None = None, content_type: str | None = YAML
) -> tuple[int, Any]:
    """Calls the worker's HTTP API on `port`: the status code and the decoded JSON body."""
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}{path}", method=method, data=body.encode() if body else None
    )
    if content_type is not None:
        request.add_header("Content-Type", content_type)
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())
