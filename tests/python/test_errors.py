"""The exception hierarchy: classes, codes, retryability, and the core raising the right class."""

from __future__ import annotations

import pytest

import headrace
from headrace import errors

EXPECTED = {
    "HeadraceError": (Exception, "headrace_error", False),
    "IngestError": (errors.HeadraceError, "ingest_error", False),
    "IngestRejected": (errors.IngestError, "ingest_rejected", False),
    "IngestUnavailable": (errors.IngestError, "ingest_unavailable", True),
    "ConfigError": (ValueError, "config_error", False),
    "StoreError": (errors.HeadraceError, "store_error", False),
    "StoreUnavailable": (errors.StoreError, "store_unavailable", True),
    "LeaseLost": (errors.HeadraceError, "lease_lost", False),
    "NotFoundError": (LookupError, "not_found", False),
    "InvocationNotFoundError": (errors.NotFoundError, "invocation_not_found", False),
    "InvalidStatusTransition": (errors.HeadraceError, "invalid_status_transition", False),
}


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_every_class_has_its_parent_code_and_retryable(name: str) -> None:
    parent, code, retryable = EXPECTED[name]
    cls = getattr(errors, name)
    assert getattr(headrace, name) is cls, "re-exported from headrace"
    assert issubclass(cls, parent)
    assert issubclass(cls, errors.HeadraceError) or cls is errors.HeadraceError
    assert (cls.code, cls.retryable) == (code, retryable)
    exc = cls("what went wrong")
    assert (exc.code, exc.retryable, str(exc)) == (code, retryable, "what went wrong")


def test_except_ingest_error_catches_both_subclasses() -> None:
    for cls in (errors.IngestRejected, errors.IngestUnavailable):
        with pytest.raises(errors.IngestError):
            raise cls("x")


def test_applications_can_subclass_and_override_per_instance() -> None:
    class QuotaExceeded(errors.IngestUnavailable):
        code = "quota_exceeded"

    exc = QuotaExceeded("slow down")
    assert isinstance(exc, errors.IngestError) and exc.retryable and exc.code == "quota_exceeded"
    assert errors.IngestError("x", retryable=True).retryable is True


def test_is_retryable_reads_the_attribute_and_defaults_to_true() -> None:
    class Flagged(Exception):
        retryable = False

    assert errors.is_retryable(errors.IngestUnavailable("x"))
    assert not errors.is_retryable(errors.IngestRejected("x"))
    assert not errors.is_retryable(Flagged())
    assert errors.is_retryable(RuntimeError("unknown"))


def test_the_core_raises_the_python_classes(sqlite_url: str) -> None:
    store = headrace.OutboxStore.connect(sqlite_url)
    with pytest.raises(headrace.NotFoundError) as caught:
        store.get(12345)
    assert type(caught.value) is errors.NotFoundError and "12345" in str(caught.value)
    with pytest.raises(ValueError):  # ConfigError is a ValueError
        store.claim_batch("w", -1)
