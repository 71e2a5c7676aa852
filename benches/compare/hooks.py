"""Rows that join the comparison when the part of headrace they measure has landed.

Each hook names the headrace module it needs. ``available()`` says whether it imports here; the
harness lists an unavailable row in the report with the reason instead of a number. To add a
row, add a function to ``KINDS`` and a ``Row`` in ``run.py`` whose ``kind`` is that key.

- ``state``: the pynenc state backend (issue #15, ``headrace.pynenc``) against pynenc's own
  SQLite state backend and pynenc-rustvello, on the same workload (``benches/bench_pynenc.py``'s:
  per invocation ``upsert_invocations``, three ``add_history`` and ``set_result``), all on SQLite
  and durable per call; ``headrace-write-behind`` is headrace's write-behind mode.
- ``orb``: the policy runner (issue #10, ``headrace.orb``) against the real orb-worker 1.16 on
  the same orb-worker backend (``tests/orb/backends/orb_describe_backend``, a list of N diode
  ``Entity`` messages) into the diode SDK's dry-run output (``benches/bench_orb.py``'s children).
  orb-worker runs in its own venv (``.venv-compare-orb``, made by ``scripts/bench-compare``).
- ``django``: enqueue inside ``transaction.atomic`` (issue #11, ``headrace.django``) against
  django-tasks-db: N transactions, each one ``task.enqueue()`` through the Django Tasks
  backend (``HeadraceTaskBackend`` / ``django_tasks_db.DatabaseBackend``), on PostgreSQL.
"""

from __future__ import annotations

import importlib
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent

NEEDS = {
    "state": ("headrace.pynenc", "issue #15 (pynenc state backend)"),
    "orb": ("headrace.orb", "issue #10 (orb-worker drop-in)"),
    "django": ("headrace.django", "issue #11 (Django integration)"),
}

#: The orb-worker peer's interpreter (its own venv: orb-worker pins its own dependencies).
ORB_PYTHON = ROOT / ".venv-compare-orb" / "bin" / "python"


def available(kind: str) -> str | None:
    """None when the hook can run; otherwise why not."""
    module, issue = NEEDS[kind]
    try:
        importlib.import_module(module)
    except ImportError:
        return f"`{module}` is not on main yet: {issue}"
    if kind not in KINDS:
        return f"`{module}` has landed; its measurement is not written yet"
    return None


def _rate(count: int, seconds: float, unit: str) -> dict[str, Any]:
    return {"value": count / seconds, "unit": unit, "count": count, "seconds": seconds}


# ---------------------------------------------------------------- state backend (pynenc)

STATE_BACKENDS = {
    "headrace": "headrace durable",
    "headrace-write-behind": "headrace write-behind",
    "pynenc-sqlite": "pynenc SQLiteStateBackend",
    "pynenc-rustvello": "rustvello",
}


def state(system: str, params: dict[str, Any], admin: str) -> dict[str, Any]:
    del admin  # every system on SQLite: pynenc has no PostgreSQL state backend of its own
    sys.path.insert(0, str(ROOT / "benches"))
    import bench_pynenc

    wanted = STATE_BACKENDS[system]
    found = [b for b in bench_pynenc.backends(None) if b.name == wanted and b.database == "sqlite"]
    if not found:
        raise RuntimeError(f"{wanted} is not installed here")
    n = params["n"]
    seconds = bench_pynenc.run_once(found[0], n)
    return _rate(n, seconds, "invocations/s")


# ---------------------------------------------------------------- policy runner (orb-worker)


def orb(system: str, params: dict[str, Any], admin: str) -> dict[str, Any]:
    del admin
    sys.path.insert(0, str(ROOT / "benches"))
    import bench_orb

    if system == "orb-worker":
        if not ORB_PYTHON.exists():
            raise RuntimeError(f"{ORB_PYTHON} is missing: scripts/bench-compare creates it")
        python, code = ORB_PYTHON, bench_orb.ORB_CHILD
    else:
        python, code = Path(sys.executable), bench_orb.HEADRACE_CHILD
    n = params["n"]
    report = bench_orb._isolated(python, code, "dry", n, False)
    result = _rate(n, report["seconds"], "devices/s")
    result["peak_rss_mib"] = report["peak_rss_kb"] / 1024
    return result


# ---------------------------------------------------------------- Django atomic enqueue


def _configure_django(url: str) -> None:
    from urllib.parse import unquote, urlsplit

    import django
    from common import dsn_and_schema
    from django.conf import settings

    dsn, schema = dsn_and_schema(url)
    parts = urlsplit(dsn)
    queues = ["default"]
    settings.configure(
        DEBUG=False,
        USE_TZ=True,
        INSTALLED_APPS=["django.contrib.contenttypes", "django.contrib.auth", "headrace.django", "django_tasks_db"],
        DATABASES={
            "default": {
                "ENGINE": "django.db.backends.postgresql",
                "NAME": parts.path.lstrip("/"),
                "USER": unquote(parts.username or ""),
                "PASSWORD": unquote(parts.password or ""),
                "HOST": parts.hostname or "",
                "PORT": str(parts.port or ""),
                "OPTIONS": {"options": f"-c search_path={schema}"},
            }
        },
        DEFAULT_AUTO_FIELD="django.db.models.BigAutoField",
        HEADRACE={"STATE": False},
        TASKS={
            "default": {"BACKEND": "headrace.django.tasks.HeadraceTaskBackend", "QUEUES": queues},
            "db": {"BACKEND": "django_tasks_db.DatabaseBackend", "QUEUES": queues},
        },
        SECRET_KEY="bench",
    )
    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)


def django_atomic(system: str, params: dict[str, Any], admin: str) -> dict[str, Any]:
    from common import fresh_schema

    with fresh_schema(admin, f"dj_{system}") as (url, _schema):
        _configure_django(url)
        from django.db import connection, transaction
        from django_bench_tasks import add

        task = add if system == "headrace" else add.using(backend="db")

        def run(count: int) -> None:
            for i in range(count):
                with transaction.atomic():
                    task.enqueue(i, 1)

        run(20)  # warm up: the first statements prepare, the connection opens
        n = params["n"]
        started = time.perf_counter()
        run(n)
        seconds = time.perf_counter() - started
        if system == "headrace":
            with connection.cursor() as cursor:
                cursor.execute("SELECT count(*) FROM headrace_outbox")
                (count,) = cursor.fetchone()
        else:
            from django_tasks_db.models import DBTaskResult

            count = DBTaskResult.objects.count()
        connection.close()
        assert count == n + 20, f"{system}: {count} rows for {n + 20} enqueues"
        return _rate(n, seconds, "transactions/s")


KINDS: dict[str, Callable[[str, dict[str, Any], str], dict[str, Any]]] = {
    "state": state,
    "orb": orb,
    "django": django_atomic,
}
