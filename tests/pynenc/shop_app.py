"""A small real pynenc app whose state backend is headrace, chosen by configuration alone.

``HEADRACE_STATE_URL`` names the store, ``HEADRACE_TRANSITIONS`` the transition mode. Its
:func:`main` starts a ``ThreadRunner``, runs tasks, a retried task, a failing task and a
workflow to completion, and prints what it saw as JSON (``test_pynenc_app.py`` runs it in a
fresh process per store, then reads the store back from another process).
"""

from __future__ import annotations

import json
import os
import sys
import threading
import time
from typing import Any

from pynenc import Pynenc

app = Pynenc(
    config_values={
        "app_id": os.environ.get("SHOP_APP_ID", "headrace_shop"),
        "orchestrator_cls": "MemOrchestrator",
        "broker_cls": "MemBroker",
        "client_data_store_cls": "MemClientDataStore",
        "trigger_cls": "MemTrigger",
        "runner_cls": "ThreadRunner",
        "state_backend_cls": "HeadraceStateBackend",
        "headrace_state_url": os.environ.get("HEADRACE_STATE_URL", "memory://"),
        "headrace_transitions": os.environ.get("HEADRACE_TRANSITIONS", "enforce"),
        "headrace_durability": os.environ.get("HEADRACE_DURABILITY", "durable"),
        "logging_level": "warning",
    }
)


class OutOfStock(Exception):
    """A domain error with custom attributes that must survive the state backend."""

    def __init__(self, sku: str, wanted: int) -> None:
        super().__init__(f"{sku}: {wanted} wanted")
        self.sku = sku
        self.wanted = wanted


class FlakySupplier(Exception):
    pass


_flaky_calls: dict[str, int] = {}


@app.task
def price(sku: str, quantity: int) -> int:
    return {"apple": 3, "pear": 5}[sku] * quantity


@app.task
def reserve(sku: str, quantity: int) -> int:
    if quantity > 10:
        raise OutOfStock(sku, quantity)
    return quantity


@app.task(retry_for=(FlakySupplier,), max_retries=2)
def confirm_with_supplier(order_id: str) -> str:
    attempts = _flaky_calls[order_id] = _flaky_calls.get(order_id, 0) + 1
    if attempts < 2:
        raise FlakySupplier(f"supplier busy for {order_id}")
    return f"confirmed {order_id} after {attempts} attempts"


@app.workflow
def checkout(order_id: str, sku: str, quantity: int) -> dict[str, Any]:
    total = price(sku, quantity).result
    reserved = reserve(sku, quantity).result
    return {"order_id": order_id, "total": total, "reserved": reserved}


def run() -> dict[str, Any]:
    """Runs the app's calls under a ThreadRunner and reports what the state backend holds."""
    runner = threading.Thread(target=app.runner.run, daemon=True)
    runner.start()
    time.sleep(0.2)
    try:
        prices = [price("apple", n) for n in range(1, 6)]
        workflow = checkout("order-1", "pear", 2)
        retried = confirm_with_supplier("order-2")
        failing = reserve("apple", 50)
        results = [inv.result for inv in prices]
        workflow_result = workflow.result
        retried_result = retried.result
        try:
            failing.result  # noqa: B018  (reading it raises the stored exception)
            failure: dict[str, Any] = {"raised": None}
        except OutOfStock as exc:
            failure = {"raised": type(exc).__name__, "sku": exc.sku, "wanted": exc.wanted}
    finally:
        app.runner.stop_runner_loop()
        runner.join(timeout=5)
    backend = app.state_backend
    invocations = {
        "prices": [str(inv.invocation_id) for inv in prices],
        "workflow": str(workflow.invocation_id),
        "retried": str(retried.invocation_id),
        "failing": str(failing.invocation_id),
    }
    history = {
        name: [h.status_record.status.value for h in backend.get_history(inv_id)]
        for name, inv_id in [(k, v) for k, v in invocations.items() if k != "prices"]
    }
    stored_exception = backend.get_exception(invocations["failing"])
    return {
        "app_id": app.app_id,
        "results": results,
        "workflow_result": workflow_result,
        "retried_result": retried_result,
        "failure": failure,
        "stored_exception": {
            "type": type(stored_exception).__name__,
            "sku": getattr(stored_exception, "sku", None),
            "wanted": getattr(stored_exception, "wanted", None),
        },
        "invocations": invocations,
        "history": history,
        "workflow_runs": [str(w.workflow_id) for w in backend.get_all_workflow_runs()],
        "workflow_sub_invocations": sorted(backend.get_workflow_sub_invocations(invocations["workflow"])),
        "workflow_children": sorted(backend.get_child_invocations(invocations["workflow"])),
    }


def main() -> None:
    """Runs :func:`run` and prints its report as JSON (pynenc refuses tasks of ``__main__``,
    so this runs as ``python -c "import shop_app; shop_app.main()"``)."""
    report = run()
    app.state_backend.close()
    json.dump(report, sys.stdout)
