"""A fresh PostgreSQL schema per test: the rule headrace's own tests follow, usable by yours.

``HEADRACE_TEST_PG_URL`` names the server. Under ``CI=true`` it defaults to the local server
(``postgres://postgres@127.0.0.1:5432/test``) and the tests must run; elsewhere, without the
variable, PostgreSQL tests are skipped. Needs ``psycopg`` (``headrace[test]``).
"""

from __future__ import annotations

import os
import uuid

import pytest

CI_PG_URL = "postgres://postgres@127.0.0.1:5432/test"


def pg_admin_url() -> str | None:
    """The server to create test schemas on, or None when PostgreSQL tests should skip."""
    url = os.environ.get("HEADRACE_TEST_PG_URL")
    if url:
        return url
    return CI_PG_URL if os.environ.get("CI") == "true" else None


def fresh_pg_url(prefix: str = "headrace_test") -> str:
    """A URL whose ``search_path`` is a new, empty schema named ``<prefix>_<random>``.

    Skips the calling test when no server is configured (never under ``CI=true``).
    """
    admin = pg_admin_url()
    if admin is None:
        pytest.skip("PostgreSQL tests need HEADRACE_TEST_PG_URL (they always run under CI=true)")
    if not prefix.isidentifier():
        raise ValueError(f"schema prefix {prefix!r} must be a plain identifier (letters, digits, _)")
    import psycopg

    schema = f"{prefix}_{uuid.uuid4().hex[:16]}"
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA {schema}")
    sep = "&" if "?" in admin else "?"
    return f"{admin}{sep}options=-c%20search_path%3D{schema}"
