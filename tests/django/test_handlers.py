"""Connection hygiene around every handler call, on the thread that runs it: connections the
handler opened are closed when obsolete (CONN_MAX_AGE) and its query log is cleared."""

from __future__ import annotations

import threading
from typing import Any

import pytest
from django.db import connection
from shop.models import Order

from headrace.django.handlers import with_connection_hygiene


def _on_a_thread(target: Any) -> None:
    failure: list[BaseException] = []

    def run() -> None:
        try:
            target()
        except BaseException as exc:
            failure.append(exc)
        finally:
            connection.close()

    thread = threading.Thread(target=run)
    thread.start()
    thread.join(60)
    if failure:
        raise failure[0]


@pytest.mark.parametrize("connected_before", [False, True], ids=["fresh thread", "thread with a connection"])
def test_each_call_closes_obsolete_connections_and_clears_the_query_log(
    transactional_db: Any, connected_before: bool
) -> None:
    Order.objects.create(number="H-1")
    closes = not connection.is_in_memory_db() if connection.vendor == "sqlite" else True
    seen: list[tuple[bool, int]] = []

    def handler(item: Any) -> int:
        # At entry: the previous call's connection was closed (CONN_MAX_AGE = 0).
        seen.append((connection.connection is None, len(connection.queries_log)))
        connection.force_debug_cursor = True
        count = Order.objects.count()
        assert connection.connection is not None and len(connection.queries_log) >= 1
        return count

    wrapped = with_connection_hygiene(handler)

    def calls() -> None:
        if connected_before:
            Order.objects.exists()  # this thread has a Django connection before any handler call
        for _ in range(3):
            assert wrapped(None) == 1
            assert len(connection.queries_log) == 0, "reset_queries after the call"
            assert (connection.connection is None) == closes, "close_old_connections after the call"

    _on_a_thread(calls)
    assert [log for _, log in seen] == [0, 0, 0]
    if closes:
        assert [closed for closed, _ in seen] == [True, True, True]
