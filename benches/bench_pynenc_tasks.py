"""The task ``bench_pynenc.py`` invokes (pynenc refuses tasks defined in ``__main__``)."""

from __future__ import annotations

from pynenc import Pynenc

bench_app = Pynenc(
    config_values={
        "app_id": "bench_pynenc_tasks",
        "orchestrator_cls": "MemOrchestrator",
        "broker_cls": "MemBroker",
        "client_data_store_cls": "MemClientDataStore",
        "trigger_cls": "MemTrigger",
    }
)


@bench_app.task
def add(a: int, b: int) -> int:
    return a + b
