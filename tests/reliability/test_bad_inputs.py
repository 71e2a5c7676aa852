"""The bad-input catalogue: every case must raise a typed headrace error whose message names
the bad value, leave the store unchanged (checked: every row, before and after), and never
crash or panic. Runs each API case on SQLite and PostgreSQL, then the CLI cases (exit code 2,
a message, no traceback). The number of cases is printed.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from headrace import OutboxStore
from headrace.errors import ConfigError, HeadraceError, NotFoundError
from headrace.outbox import OutboxReaper, RetryPolicy

from .fixtures import fresh_pg_url

SECRET = "Zq9secretXk7"
HUGE = [1e12, 1e17, 1e18, 1e300, float("inf"), float("nan"), -1.0]


@dataclass
class Case:
    name: str
    call: Callable[[OutboxStore, int], Any]
    error: type[BaseException] = ConfigError
    names: str = ""


def enqueue_case(name: str, names: str, **kwargs: Any) -> Case:
    def call(store: OutboxStore, _claimed: int) -> Any:
        options = {"topic": "t", "payload": {"a": 1}, **kwargs}
        return store.enqueue(options.pop("topic"), options.pop("payload"), **options)

    return Case(f"enqueue {name}", call, ConfigError, names)


def api_cases() -> list[Case]:
    cases: list[Case] = []
    for value in HUGE:
        cases.append(enqueue_case(f"delay_seconds={value}", "delay_seconds", delay_seconds=value))
        cases.append(
            Case(
                f"extend_lease seconds={value}",
                lambda s, i, v=value: s.extend_lease(i, "w", v),
                ConfigError,
                "seconds",
            )
        )
        cases.append(Case(f"purge {value}", lambda s, i, v=value: s.purge(v), ConfigError, "older_than_seconds"))
        cases.append(
            Case(
                f"reaper threshold {value}",
                lambda s, i, v=value: OutboxReaper(s, stale_threshold_seconds=v).reap_stale_items(),
                ConfigError,
                "stale_threshold_seconds",
            )
        )
        cases.append(
            Case(
                f"lease_seconds={value}",
                lambda s, i, v=value: OutboxStore.connect(s.url, lease_seconds=v),
                ConfigError,
                "lease_seconds",
            )
        )
        cases.append(
            Case(
                f"RetryPolicy max_seconds={value}",
                lambda s, i, v=value: RetryPolicy(max_seconds=v),
                ConfigError,
                "max_seconds",
            )
        )
    for field in ("topic", "dedupe_key", "trace_id"):
        cases.append(enqueue_case(f"{field} with a NUL byte", field, **{field: "a\0b"}))
        cases.append(enqueue_case(f"{field} of 1 MB", field, **{field: "k" * (1 << 20)}))
    for field in ("topic", "dedupe_key", "trace_id"):
        cases.append(enqueue_case(f"empty {field}", field, **{field: ""}))
        cases.append(enqueue_case(f"blank {field}", field, **{field: "   "}))
    cases += [
        enqueue_case("payload with a NUL character", "NUL", payload={"a": "x\0y"}),
        enqueue_case("payload key with a NUL character", "NUL", payload={"a\0": 1}),
        enqueue_case("max_attempts=0", "max_attempts", max_attempts=0),
        enqueue_case("max_attempts=-5", "max_attempts", max_attempts=-5),
        enqueue_case("payload over max_payload_bytes", "max_payload_bytes", payload="x" * (2 << 20)),
        enqueue_case("payload of a set", "payload", payload={1, 2}),
        enqueue_case("payload of an object", "payload", payload=object()),
        enqueue_case("payload with NaN", "payload", payload={"x": float("nan")}),
        Case(
            "enqueue_many with one bad item",
            lambda s, i: s.enqueue_many([{"topic": "t", "payload": 1}, {"topic": "\0", "payload": 2}]),
            ConfigError,
            "topic",
        ),
        Case(
            "enqueue_many with an unknown key",
            lambda s, i: s.enqueue_many([{"topic": "t", "payload": 1, "delay": 5}]),
            ConfigError,
            "delay",
        ),
        Case("claim_batch with a NUL worker id", lambda s, i: s.claim_batch("w\0", 1), ConfigError, "worker_id"),
        Case("claim_batch with an empty worker id", lambda s, i: s.claim_batch("", 1), ConfigError, "worker_id"),
        Case("claim_batch limit -1", lambda s, i: s.claim_batch("w", -1), ConfigError, "limit"),
        Case("list limit -1", lambda s, i: s.list(limit=-1), ConfigError, "limit"),
        Case("list unknown status", lambda s, i: s.list(status="done"), ConfigError, "done"),
        Case("get unknown id", lambda s, i: s.get(99_999_999), NotFoundError, "99999999"),
        Case("requeue unknown id", lambda s, i: s.requeue(99_999_999), NotFoundError, "99999999"),
        Case("RetryPolicy factor 0.5", lambda s, i: RetryPolicy(factor=0.5), ConfigError, "factor"),
        Case("RetryPolicy jitter 2", lambda s, i: RetryPolicy(jitter=2.0), ConfigError, "jitter"),
        Case("RetryPolicy max_attempts 0", lambda s, i: RetryPolicy(max_attempts=0), ConfigError, "max_attempts"),
        Case(
            "connect with an unknown scheme",
            lambda s, i: OutboxStore.connect(f"mysql://u:{SECRET}@h/db"),
            ConfigError,
            "mysql",
        ),
        Case(
            "connect with a bad port",
            lambda s, i: OutboxStore.connect(f"postgres://u:{SECRET}@h:99999/db"),
            ConfigError,
            "port",
        ),
        Case(
            "connect with ?password=",
            lambda s, i: OutboxStore.connect(f"postgres://u@/db?password={SECRET}"),
            ConfigError,
            "host",
        ),
        Case(
            "connect with a # in the password",
            lambda s, i: OutboxStore.connect(f"postgres://u:a#{SECRET}@h:x/db"),
            ConfigError,
            "PostgreSQL",
        ),
        Case("connect to an empty sqlite path", lambda s, i: OutboxStore.connect("sqlite://"), ConfigError, "sqlite"),
        Case(
            "max_payload_bytes 0",
            lambda s, i: OutboxStore.connect(s.url, max_payload_bytes=0),
            ConfigError,
            "max_payload_bytes",
        ),
    ]
    # Values that plain extraction turned into OverflowError, TypeError or UnicodeEncodeError.
    big = 99_999_999_999_999_999_999
    cases += [
        enqueue_case("priority=10**20", str(big), priority=big),
        enqueue_case("priority=2**31", "2147483648", priority=2**31),
        enqueue_case("priority='high'", "'high'", priority="high"),
        enqueue_case("max_attempts=10**20", str(big), max_attempts=big),
        enqueue_case("topic=5", "5", topic=5),
        enqueue_case("topic with a lone surrogate", "surrogate", topic="\ud800"),
        enqueue_case("dedupe_key with a lone surrogate", "surrogate", dedupe_key="\udfff"),
        enqueue_case("delay_seconds='5'", "'5'", delay_seconds="5"),
        enqueue_case("delay_seconds=10**400", "too large", delay_seconds=10**400),
        Case("claim_batch limit 10**20", lambda s, i: s.claim_batch("w", big), ConfigError, str(big)),
        Case("claim_batch topics='t'", lambda s, i: s.claim_batch("w", 1, topics="t"), ConfigError, "list"),
        Case("claim_batch worker_id=5", lambda s, i: s.claim_batch(5, 1), ConfigError, "string"),
        Case("get 10**20", lambda s, i: s.get(big), ConfigError, str(big)),
        Case("get '1'", lambda s, i: s.get("1"), ConfigError, "'1'"),
        Case("requeue 10**20", lambda s, i: s.requeue(big), ConfigError, str(big)),
        Case("mark_success 10**20", lambda s, i: s.mark_success(big, "w"), ConfigError, str(big)),
        Case("mark_failed error surrogate", lambda s, i: s.mark_failed(i, "w", "\ud800"), ConfigError, "surrogate"),
        Case("extend_lease seconds='5'", lambda s, i: s.extend_lease(i, "w", "5"), ConfigError, "'5'"),
        Case("release [10**20]", lambda s, i: s.release([big], "w"), ConfigError, str(big)),
        Case("purge statuses='completed'", lambda s, i: s.purge(5, statuses="completed"), ConfigError, "list"),
        Case("enqueue_many of a dict", lambda s, i: s.enqueue_many({"topic": "t"}), ConfigError, "dict"),
        Case(
            "enqueue_many priority 10**20",
            lambda s, i: s.enqueue_many([{"topic": "t", "payload": 1, "priority": big}]),
            ConfigError,
            str(big),
        ),
        Case("RetryPolicy max_attempts 10**20", lambda s, i: RetryPolicy(max_attempts=big), ConfigError, str(big)),
        Case("RetryPolicy base_seconds='x'", lambda s, i: RetryPolicy(base_seconds="x"), ConfigError, "'x'"),
        Case(
            "max_payload_bytes 10**20",
            lambda s, i: OutboxStore.connect(s.url, max_payload_bytes=big),
            ConfigError,
            str(big),
        ),
        Case(
            "run_at=time.time()",
            lambda s, i: s.enqueue("t", 1, run_at=1_796_000_000.0),
            ConfigError,
            "Unix timestamp",
        ),
    ]
    return cases


API_CASES = api_cases()


def snapshot(store: OutboxStore) -> list[tuple[Any, ...]]:
    rows = store.list(limit=10_000)
    return sorted((i.id, i.status, i.attempts, i.run_at, i.lease_expires_at, i.last_error, i.payload) for i in rows)


@pytest.fixture(params=["sqlite", "postgres"], scope="module")
def seeded(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[OutboxStore, int]]:
    """A store holding one claimed item (leased to "w") and two pending ones."""
    if request.param == "sqlite":
        url = f"sqlite://{tmp_path_factory.mktemp('catalogue') / 'outbox.db'}"
    else:
        url = fresh_pg_url()
    store = OutboxStore.connect(url, migrate=True)
    claimed = store.enqueue("t", {"n": 0})
    store.claim_batch("w", 1)
    store.enqueue("t", {"n": 1})
    store.enqueue("t", {"n": 2}, dedupe_key="order-2")
    yield store, claimed
    store.close()


@pytest.mark.parametrize("case", API_CASES, ids=[c.name for c in API_CASES])
def test_bad_input_is_refused_with_a_typed_error_and_changes_nothing(
    case: Case, seeded: tuple[OutboxStore, int]
) -> None:
    store, claimed = seeded
    before = snapshot(store)
    with pytest.raises(case.error) as raised:
        case.call(store, claimed)
    message = str(raised.value)
    assert isinstance(raised.value, HeadraceError), type(raised.value)
    assert case.names.lower() in message.lower(), message
    assert SECRET not in message and SECRET not in repr(raised.value)
    assert snapshot(store) == before


CLI_CASES = [
    (["outbox", "requeue", "99999999999999999999"], "item_id"),
    (["outbox", "show", "99999999999999999999"], "item_id"),
    (["outbox", "show", "12"], "12"),
    (["outbox", "list", "--limit", "-1"], "limit"),
    (["runs", "--limit", "-1"], "limit"),
    (["worker", "--max-payload-bytes", "-1", "--once"], "--max-payload-bytes"),
    (["worker", "--batch-size", "0", "--once"], "--batch-size"),
    (["worker", "--concurrency", "0", "--once"], "--concurrency"),
    (["outbox", "show", "abc"], "item_id"),
    (["run", "/nonexistent/policies.yaml", "--once"], "policies.yaml"),
    (["--db", f"postgres://u:{SECRET}@h:99999/db", "migrate"], "port"),
    (["--db", f"postgres://u@nowhere.invalid/db?password={SECRET}", "migrate"], "PostgreSQL"),
    (["--db", "mysql://h/db", "outbox", "stats"], "mysql"),
]


@pytest.mark.parametrize("argv,names", CLI_CASES, ids=[" ".join(a) for a, _ in CLI_CASES])
def test_cli_bad_input_exits_2_with_a_message(argv: list[str], names: str, tmp_path: Path) -> None:
    db = f"sqlite://{tmp_path / 'cli.db'}"
    OutboxStore.connect(db, migrate=True).enqueue("t", 1)
    env = {**os.environ, "HEADRACE_DATABASE_URL": db}
    done = subprocess.run(
        [sys.executable, "-m", "headrace.cli", *argv], capture_output=True, text=True, env=env, timeout=60, check=False
    )
    output = done.stdout + done.stderr
    assert done.returncode == 2, output
    assert "Traceback" not in output, output
    assert names.lower() in output.lower(), output
    assert SECRET not in output, output
    after = OutboxStore.connect(db)
    assert after.stats() == {"pending": 1, "processing": 0, "completed": 0, "failed": 0}


def test_catalogue_size() -> None:
    total = len(API_CASES) * 2 + len(CLI_CASES)
    print(f"\nbad-input catalogue: {total} cases ({len(API_CASES)} API x 2 databases + {len(CLI_CASES)} CLI)")
    assert total >= 80
