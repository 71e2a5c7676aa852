"""pytest fixtures for pytest-django users (loaded automatically through the ``pytest11`` entry
point; imports nothing of Django until a fixture is used).

* ``headrace_outbox`` — a :func:`~headrace.django.testing.capture_outbox` list for the test.
* ``run_outbox`` — :func:`~headrace.django.testing.run_outbox`, inside the test's transaction.
* ``headrace_clean_outbox`` — empties the outbox before and after a test that commits
  (``django_db(transaction=True)``): Django's flush leaves the core's tables alone.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest


@pytest.fixture
def headrace_outbox(db: Any) -> Iterator[list[Any]]:
    from headrace.django.testing import capture_outbox

    with capture_outbox() as captured:
        yield captured


@pytest.fixture
def run_outbox(db: Any) -> Callable[..., Any]:
    from headrace.django.testing import run_outbox as run

    return run


def _empty_outbox() -> None:
    from django.db import connections

    from headrace.django import db as hdb

    with connections[hdb.outbox_alias()].cursor() as cursor:
        cursor.execute("DELETE FROM headrace_outbox")


@pytest.fixture
def headrace_clean_outbox(transactional_db: Any) -> Iterator[None]:
    _empty_outbox()
    yield
    _empty_outbox()
