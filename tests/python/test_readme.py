"""The README's python code blocks are executable specifications: each one runs as written.

Every ```` ```python ```` block of README.md runs, in a fresh interpreter whose working directory
is a new temporary directory, unless the line right before it says why not:

    <!-- not run: reason -->

so the rule is visible in the README's source. A block that uses a placeholder for the reader's
own code (``send(...)``, ``smtp``, ``crm``, a record named ``integration``) gets a small prelude,
keyed below by the block's first line and run in the same namespace before it; a check may
follow it to assert what the block's comments promise. Nothing in the block is rewritten, except
that a block whose comment offers a ``"postgres://…"`` URL in place of its SQLite one also runs
with a fresh PostgreSQL schema there (``HEADRACE_TEST_PG_URL``; always under ``CI=true``).

A failing block fails its test, named by README line and first line; the traceback's line
numbers are README.md's own.
"""

from __future__ import annotations

import re
import subprocess
import sys
import textwrap
from dataclasses import dataclass
from pathlib import Path

import pytest

from headrace.testing.postgres import fresh_pg_url

README = Path(__file__).resolve().parents[2] / "README.md"

FENCE = re.compile(r"^```python\n(.*?)^```$", re.M | re.S)
NOT_RUN = re.compile(r"^<!-- not run: (?P<reason>\S.*?) -->$")
# The SQLite URL on a line whose comment offers PostgreSQL instead: `"sqlite://…"  # or "postgres://…`
SQLITE_OR_PG = re.compile(r'"(sqlite://[^"]+)"(?=[^\n]*#[^\n]*or "postgres://)')


@dataclass(frozen=True)
class Block:
    line: int  # README line of the block's first code line
    source: str
    not_run: str | None  # the reason, when marked

    @property
    def first_line(self) -> str:
        return self.source.splitlines()[0].strip()

    @property
    def name(self) -> str:
        return f"README.md:{self.line} {self.first_line}"


def readme_blocks() -> list[Block]:
    text = README.read_text(encoding="utf-8")
    blocks = []
    for match in FENCE.finditer(text):
        fence_line = text.count("\n", 0, match.start()) + 1
        before = text[: match.start()].rstrip("\n").rsplit("\n", 1)[-1]
        marker = NOT_RUN.match(before)
        blocks.append(Block(fence_line + 1, match.group(1), marker.group("reason") if marker else None))
    return blocks


@dataclass(frozen=True)
class Harness:
    prelude: str = ""  # placeholders for "your code here", run first in the block's namespace
    check: str = ""  # run after the block, in its namespace: what the block's comments promise


# Keyed by the block's first line. Every prelude only stands in for the reader's own code.
HARNESS: dict[str, Harness] = {
    # Outbox: `send` is the reader's delivery function.
    "from headrace import OutboxStore, OutboxReaper, RetryPolicy, IngestRejected": Harness(
        prelude="""
            sent = []
            def send(payload):  # your code: deliver one payload
                sent.append(payload)
        """,
        check="""
            assert sent == [{"to": "a@example.com"}], sent
            assert store.stats()["completed"] == 1, store.stats()
        """,
    ),
    # Worker: `store` is the Outbox section's, `state_backend` the State section's; `smtp` and
    # `alert` are the reader's. Two mails wait: one without a recipient (dead-lettered, alerted)
    # and one that is sent; sending it stops `worker.run()`, as an operator's SIGTERM would.
    "from headrace import IngestRejected, OutboxStore": Harness(
        prelude="""
            from headrace import OutboxStore
            from headrace.state import StateBackend
            store = OutboxStore.connect("sqlite://outbox.db")
            state_backend = StateBackend.connect("memory://")
            store.enqueue("mail.send", {"subject": "no recipient"})
            store.enqueue("mail.send", {"to": "a@example.com"})
            sent, alerts = [], []
            class smtp:  # your code: an SMTP client
                @staticmethod
                def send(payload):
                    sent.append(payload)
                    worker.stop()
            def alert(item_id, error):  # your code: page someone
                alerts.append((item_id, error))
        """,
        check="""
            assert sent == [{"to": "a@example.com"}], sent
            assert len(alerts) == 1 and "no recipient" in str(alerts[0][1]), alerts
            assert store.stats()["completed"] == 1 and store.stats()["failed"] == 1, store.stats()
        """,
    ),
    # Integrations: `integration` and `shop` are the reader's records, `crm` their CRM client.
    # The CRM upsert ends `run()` the way an operator would: SIGTERM (a graceful stop).
    "from headrace.integrations import BridgeImpl, QueuedClient, registry, run_due_bridges": Harness(
        prelude="""
            import os, signal
            from types import SimpleNamespace
            from headrace import OutboxStore
            store = OutboxStore.connect("sqlite://app.db")
            integration = SimpleNamespace(pk=1, vendor_slug="crm")
            shop = SimpleNamespace(pk=7, vendor_slug="shop")
            upserted = []
            class crm:  # your code: a CRM client
                @staticmethod
                def upsert(payload):
                    upserted.append(payload)
                    os.kill(os.getpid(), signal.SIGTERM)
        """,
        check="""
            assert upserted == [{"contact": 42}], upserted
        """,
    ),
    # Policy runner: its policy names the backend as "__main__:Inventory", the block's own class.
    "from headrace import Backend, Metadata, PolicyManager, OutboxSink, OutboxStore": Harness(
        # A quarter-hour tick may add a scheduled run of its own: look for the manual one.
        check="""
            manual = [r for r in manager.runs("lab") if str(r.source) == "manual"]
            assert [(str(r.status), r.entity_count) for r in manual] == [("completed", 2)], manual
            assert store.stats()["pending"] >= 1, store.stats()
        """,
    ),
}

SCRIPT = """\
import sys, textwrap, types
module = types.ModuleType('__main__')
module.__dict__["__builtins__"] = __builtins__
sys.modules['__main__'] = module
exec(compile({prelude!r}, "<prelude of README.md:{line}>", "exec"), module.__dict__)
exec(compile("\\n" * {offset} + {source!r}, "README.md", "exec"), module.__dict__)
exec(compile({check!r}, "<check of README.md:{line}>", "exec"), module.__dict__)
"""


def run_block(block: Block, source: str, cwd: Path) -> None:
    harness = HARNESS.get(block.first_line, Harness())
    script = SCRIPT.format(
        prelude=textwrap.dedent(harness.prelude),
        check=textwrap.dedent(harness.check),
        line=block.line,
        offset=block.line - 1,
        source=source,
    )
    done = subprocess.run(
        [sys.executable, "-c", script],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=300,
    )
    if done.returncode != 0:
        pytest.fail(f"{block.name} (README line {block.line}) failed:\n{done.stderr[-6000:]}", pytrace=False)


RUNNABLE = [b for b in readme_blocks() if b.not_run is None]
ON_POSTGRES = [b for b in RUNNABLE if SQLITE_OR_PG.search(b.source)]


@pytest.mark.parametrize("block", RUNNABLE, ids=[b.name for b in RUNNABLE])
def test_readme_block_runs(block: Block, tmp_path: Path) -> None:
    run_block(block, block.source, tmp_path)


@pytest.mark.parametrize("block", ON_POSTGRES, ids=[b.name for b in ON_POSTGRES])
def test_readme_block_runs_on_postgres(block: Block, tmp_path: Path) -> None:
    url = fresh_pg_url("headrace_readme")
    source, swapped = SQLITE_OR_PG.subn(lambda m: f'"{url}"', block.source)
    assert swapped, block.name
    run_block(block, source, tmp_path)


def test_every_harness_matches_a_runnable_block() -> None:
    blocks = readme_blocks()
    assert len(blocks) >= 10, f"expected the README's python blocks, found {len(blocks)}"
    stale = set(HARNESS) - {b.first_line for b in blocks if b.not_run is None}
    assert not stale, f"harness entries matching no runnable README block: {sorted(stale)}"
