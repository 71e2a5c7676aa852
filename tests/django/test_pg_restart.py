"""A real PostgreSQL restart under ``manage.py headrace_worker``: a private cluster (initdb and
pg_ctl from the machine's PostgreSQL, on a free port) is restarted while the worker runs. The
worker reconnects (its core pool, its LISTEN connection and Django's connection in the handler)
and every item enqueued before and after the restart is processed exactly once."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import HERE, engine

pytestmark = pytest.mark.skipif(engine() != "postgres", reason="restarts a PostgreSQL server")


def _bindir() -> Path | None:
    try:
        out = subprocess.run(["pg_config", "--bindir"], capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return None
    path = Path(out.strip())
    return path if (path / "initdb").exists() else None


class Cluster:
    def __init__(self, bindir: Path, root: Path) -> None:
        self.bindir, self.root = bindir, root
        self.data, self.log = root / "data", root / "server.log"
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = probe.getsockname()[1]
        self.url = f"postgres://postgres@127.0.0.1:{self.port}/postgres"

    def run(self, tool: str, *args: str) -> None:
        command = [str(self.bindir / tool), *args]
        if os.geteuid() == 0:  # PostgreSQL refuses to run as root
            command = ["runuser", "-u", "postgres", "--", *command]
        done = subprocess.run(command, capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, f"{tool} failed: {done.stdout}{done.stderr}"

    def init(self) -> None:
        if os.geteuid() == 0:
            shutil.chown(self.root, "postgres")
        self.run("initdb", "-D", str(self.data), "-U", "postgres", "--auth=trust", "-E", "UTF8")
        self.start()

    def _options(self) -> str:
        return f"-p {self.port} -c listen_addresses=127.0.0.1 -k {self.root} -c fsync=off"

    def start(self) -> None:
        self.run("pg_ctl", "-D", str(self.data), "-o", self._options(), "-l", str(self.log), "-w", "start")

    def restart(self) -> None:
        self.run(
            "pg_ctl", "-D", str(self.data), "-o", self._options(), "-l", str(self.log), "-m", "fast", "-w", "restart"
        )

    def stop(self) -> None:
        self.run("pg_ctl", "-D", str(self.data), "-m", "immediate", "-w", "stop")


@pytest.fixture
def cluster() -> Iterator[Cluster]:
    bindir = _bindir()
    if bindir is None:
        if os.environ.get("CI") == "true":
            pytest.fail("PostgreSQL's server binaries (pg_config --bindir) are missing")
        pytest.skip("needs PostgreSQL's server binaries")
    # Not under pytest's tmp_path: its parents are private to root, and the server runs as postgres.
    root = Path(tempfile.mkdtemp(prefix="headrace-pg-restart-"))
    root.chmod(0o755)
    cluster = Cluster(bindir, root)
    try:
        cluster.init()
        yield cluster
    finally:
        if (cluster.data / "postmaster.pid").exists():
            cluster.stop()
        shutil.rmtree(root, ignore_errors=True)


def _env(cluster: Cluster) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "HEADRACE_TEST_DB_NAME"}
    env.update(HEADRACE_TEST_DB="postgres", HEADRACE_TEST_PG_URL=cluster.url, PYTHONUNBUFFERED="1")
    return env


def _manage(cluster: Cluster, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, str(HERE / "manage.py"), *args],
        env=_env(cluster),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def _query(cluster: Cluster, sql: str, *params: Any) -> list[tuple[Any, ...]]:
    import psycopg

    for _ in range(100):  # the server may still be coming back
        try:
            with psycopg.connect(cluster.url, autocommit=True) as conn:
                cur = conn.execute(sql, params)
                return cur.fetchall() if cur.description else []
        except psycopg.OperationalError:
            time.sleep(0.1)
    raise AssertionError("the private PostgreSQL did not come back")


def _place_orders(cluster: Cluster, prefix: str, n: int) -> None:
    """Orders and their outbox items, written in one transaction by a client of its own (the
    statement-level trigger wakes the worker)."""
    import psycopg

    from headrace._core import ExternalOutboxSql

    sql = ExternalOutboxSql("postgresql")
    with psycopg.connect(cluster.url) as conn:
        for i in range(n):
            (order_id,) = conn.execute(
                "INSERT INTO shop_order (number, total, notified) VALUES (%s, 0, false) RETURNING id",
                (f"{prefix}-{i}",),
            ).fetchone()  # type: ignore[misc]
            (insert, _existing) = sql.enqueue("shop.order_placed", {"order_id": order_id})
            conn.execute(*insert)


def _wait(cluster: Cluster, completed: int, proc: subprocess.Popen[str], timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, proc.communicate()[0]
        rows = dict(_query(cluster, "SELECT status, COUNT(*) FROM headrace_outbox GROUP BY status"))
        if rows == {"completed": completed}:
            return
        time.sleep(0.1)
    raise AssertionError(f"expected {completed} completed items, have {rows}")


def test_the_worker_reconnects_after_a_server_restart_and_loses_nothing(cluster: Cluster) -> None:
    migrate = _manage(cluster, "migrate", "--no-input")
    out, _ = migrate.communicate(timeout=180)
    assert migrate.returncode == 0, out
    worker = _manage(cluster, "headrace_worker", "--concurrency", "2")
    try:
        assert worker.stdout is not None
        assert "headrace worker" in worker.stdout.readline()
        _place_orders(cluster, "before", 20)
        _wait(cluster, 20, worker)
        cluster.restart()  # every connection of the worker dies with the server
        _place_orders(cluster, "after", 20)
        _wait(cluster, 40, worker)
        assert _query(cluster, "SELECT COUNT(*) FROM shop_order WHERE notified") == [(40,)]
        assert _query(cluster, "SELECT MAX(attempts) FROM headrace_outbox") == [(1,)]
        worker.send_signal(signal.SIGTERM)
        out, _ = worker.communicate(timeout=60)
        assert worker.returncode == 0, out
    finally:
        if worker.poll() is None:
            worker.kill()
            worker.communicate()
