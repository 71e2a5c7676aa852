"""Shared helpers of the orb-worker drop-in tests (a module name of its own, so that these
tests run alongside other test directories' conftest modules)."""

from __future__ import annotations

import os
import sys
import uuid
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
BACKENDS = HERE / "backends"
if str(BACKENDS) not in sys.path:
    sys.path.insert(0, str(BACKENDS))

CI_PG_URL = "postgres://postgres@127.0.0.1:5432/test"
#: The virtualenv holding the real orb-worker 1.16 (made by scripts/test-orb).
ORB_VENV = Path(os.environ.get("HEADRACE_ORB_VENV", ROOT / ".venv-orb"))


def pg_admin_url() -> str | None:
    url = os.environ.get("HEADRACE_TEST_PG_URL")
    if url:
        return url
    return CI_PG_URL if os.environ.get("CI") == "true" else None


def fresh_pg_url() -> str:
    admin = pg_admin_url()
    if admin is None:
        pytest.skip("PostgreSQL tests need HEADRACE_TEST_PG_URL (they always run under CI=true)")
    import psycopg

    schema = f"headrace_orb_{uuid.uuid4().hex[:16]}"
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA {schema}")
    sep = "&" if "?" in admin else "?"
    return f"{admin}{sep}options=-c%20search_path%3D{schema}"


def orb_python() -> Path:
    """The real orb-worker's interpreter (skips outside CI when it is missing)."""
    python = ORB_VENV / "bin" / "python"
    if not python.exists():
        if os.environ.get("CI") == "true":
            raise RuntimeError(f"{python} is missing: scripts/test-orb creates it")
        pytest.skip(f"the real orb-worker venv {ORB_VENV} is missing (scripts/test-orb creates it)")
    return python
