"""Security checks of the reliability suite (issue #9, part 6): injection strings pushed through
every string-taking API are stored and read back verbatim (and the tables survive), and a
database password never appears in an error, a repr, a log record (DEBUG), CLI output or a
stored row."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from headrace import OutboxStore
from headrace.errors import HeadraceError
from headrace.runner import NullSink, PolicyManager
from headrace.state import Invocation, StateBackend, WorkflowIdentity
from headrace.worker import OutboxWorker

from .fixtures import fresh_pg_url

INJECTIONS = [
    "'; DROP TABLE headrace_outbox; --",
    '" OR "1"="1',
    "x' OR '1'='1' --",
    "$1",
    "%s %(name)s {0}",
    "\\'; SELECT pg_sleep(5); --",
    "robert'); DELETE FROM headrace_outbox WHERE ('1'='1",
    "_%",
    "ünïcødé 🔥 \u202e",
    "a\tb\nc\r",
    "../../etc/passwd",
    "${jndi:ldap://x}",
]
SECRET = "Pw9sEcReT4xq"


@pytest.fixture(params=["sqlite", "postgres"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    return f"sqlite://{tmp_path / 'headrace.db'}" if request.param == "sqlite" else fresh_pg_url()


def test_injection_strings_are_stored_verbatim(db_url: str) -> None:
    store = OutboxStore.connect(db_url)
    ids = {}
    for n, text in enumerate(INJECTIONS):
        ids[text] = store.enqueue(text, {text: text, "n": n}, dedupe_key=text, trace_id=text)
    for text, item_id in ids.items():
        item = store.get(item_id)
        assert (item.topic, item.dedupe_key, item.trace_id, item.payload[text]) == (text, text, text, text)
        assert store.enqueue(text, {"again": 1}, dedupe_key=text) == item_id, "the key matches exactly, once"
    assert len(store.list(topic=INJECTIONS[0])) == 1, "a topic filter matches exactly"
    assert store.list(topic="%") == [] and store.list(topic="_%") != []
    for text in INJECTIONS:
        [item] = store.claim_batch(text, 1, topics=[text])
        store.mark_failed(item.id, text, text)
        failed = store.get(item.id)
        assert (failed.lease_owner, failed.last_error) == (None, text) and failed.status == "failed"
    assert store.stats()["failed"] == len(INJECTIONS), "every table and row survived"
    assert store.requeue_failed(topic=INJECTIONS[0]) == 1

    state = StateBackend(db_url)
    workflow = WorkflowIdentity(INJECTIONS[1], INJECTIONS[0])
    for text in INJECTIONS:
        inv = Invocation(text, {text: text}, invocation_id=f"id-{text}", workflow=workflow)
        state.upsert_invocation(inv)
        state.set_workflow_data(workflow, text, text)
    state.wait_for_all_async_operations()
    fresh = StateBackend(db_url)
    for text in INJECTIONS:
        got = fresh.get_invocation(f"id-{text}")
        assert (got.task_id, got.arguments) == (text, {text: text})
        assert fresh.get_workflow_data(workflow, text) == text
    print(f"\ninjection: {len(INJECTIONS)} strings through topics, keys, ids, payloads, errors and state, verbatim")
    state.close()
    fresh.close()


def secret_url() -> str:
    """The test database's URL with a password (the local server trusts it, so it connects)."""
    url = fresh_pg_url()
    assert "@" in url and "://" in url
    scheme, rest = url.split("://", 1)
    user, host = rest.split("@", 1)
    return f"{scheme}://{user.split(':')[0]}:{SECRET}@{host}"


def test_a_password_never_leaks(caplog: pytest.LogCaptureFixture, tmp_path: Path) -> None:
    url = secret_url()
    seen: list[str] = []
    caplog.set_level(logging.DEBUG)
    store = OutboxStore.connect(url)
    seen += [repr(store), str(store.url)]
    item_id = store.enqueue("t", {"n": 1})

    def handle(item: Any) -> None:
        raise RuntimeError("handler failed")

    OutboxWorker(store, {"t": handle}, reaper_interval=None).run_until_empty(timeout=30)
    state = StateBackend(url)
    seen += [repr(state), str(PolicyManager(state=url, sink=NullSink()).state)]
    bad_urls = [
        url.replace("127.0.0.1:5432", "127.0.0.1:1"),  # nothing listens
        url.replace(":5432/", ":99999/"),  # a bad port
        url.rsplit("?", 1)[0].rsplit("/", 1)[0] + "/no_such_database_hr",  # refused by the server
        url.replace(f":{SECRET}@", "@") + f"&password={SECRET}&sslmode=bogus",
    ]
    for bad in bad_urls:
        with pytest.raises(HeadraceError) as raised:
            OutboxStore.connect(bad)
        seen += [str(raised.value), repr(raised.value)]
        with pytest.raises(HeadraceError) as raised_state:
            StateBackend(bad).get_app_info()
        seen += [str(raised_state.value)]
    env = {**os.environ, "HEADRACE_DATABASE_URL": url}
    for argv in (["migrate"], ["outbox", "stats"], ["outbox", "list"], ["--db", url, "outbox", "show", str(item_id)]):
        done = subprocess.run(
            [sys.executable, "-m", "headrace.cli", *argv], capture_output=True, text=True, env=env, timeout=60
        )
        seen += [done.stdout, done.stderr]
        assert done.returncode == 0, done.stderr
    rows = [str(vars(item)) if hasattr(item, "__dict__") else repr(item) for item in store.list(limit=100)]
    seen += rows + [r.getMessage() for r in caplog.records]
    leaks = [text for text in seen if SECRET in text]
    print(f"\nsecrets: {len(seen)} errors, reprs, CLI outputs, rows and log records checked; leaks {len(leaks)}")
    assert leaks == []
    assert "***" in str(store.url)
    state.close()
    store.close()


def test_no_stored_row_holds_the_password() -> None:
    import psycopg

    url = secret_url()
    store = OutboxStore.connect(url)
    store.enqueue("t", {"n": 1})
    OutboxWorker(store, {"t": lambda item: None}, reaper_interval=None).run_until_empty()
    state = StateBackend(url)
    state.upsert_invocation(Invocation("task", {"a": 1}))
    state.wait_for_all_async_operations()
    schema = url.rsplit("search_path%3D", 1)[1]
    with psycopg.connect(fresh_pg_url().split("?")[0], autocommit=True) as conn:
        tables = [
            name
            for (name,) in conn.execute(
                "SELECT table_name FROM information_schema.tables WHERE table_schema = %s", (schema,)
            ).fetchall()
        ]
        assert tables, "nothing was stored"
        for table in tables:
            dump = conn.execute(f'SELECT row_to_json(t)::text FROM "{schema}"."{table}" t').fetchall()
            assert not any(SECRET in text for (text,) in dump), table
    state.close()
    store.close()
