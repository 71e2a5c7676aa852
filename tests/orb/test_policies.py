"""Policy documents: one validation rule (the API, the command line, Django) and durable storage
on the run store's state backend."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from headrace.errors import ConfigError, NotFoundError
from headrace.orb import PolicyStore, parse_policy_request, validate_policy_document
from headrace.state import StateBackend

GOOD = """
policies:
  p1:
    config:
      package: orb_describe_backend
      schedule: "*/10 * * * *"
      custom: ${ORB_TEST_CUSTOM}
    scope:
      target: host
      port: 22
"""


def test_a_valid_document_resolves_env_and_validates(monkeypatch) -> None:
    monkeypatch.setenv("ORB_TEST_CUSTOM", "from-env")
    request = parse_policy_request(GOOD)
    assert request.policies["p1"].config.custom == "from-env"  # type: ignore[attr-defined]
    assert validate_policy_document(GOOD) == []


def test_validation_errors_are_orb_workers_list() -> None:
    document = {"policies": {"p1": {"config": {"schedule": "bad"}}}}
    problems = validate_policy_document(document)
    fields = {(p["field"], p["type"]) for p in problems}
    assert ("policies.p1.config.package", "missing") in fields
    assert ("policies.p1.config.schedule", "value_error") in fields
    assert ("policies.p1.scope", "missing") in fields
    with pytest.raises(ValidationError):
        parse_policy_request(document)


def test_unset_variables_and_bad_yaml_are_reported(monkeypatch) -> None:
    monkeypatch.delenv("ORB_TEST_CUSTOM", raising=False)
    (problem,) = validate_policy_document(GOOD)
    assert problem["type"] == "env" and "ORB_TEST_CUSTOM" in problem["error"]
    with pytest.raises(ConfigError, match="ORB_TEST_CUSTOM"):
        parse_policy_request(GOOD)
    (problem,) = validate_policy_document("policies: [unclosed")
    assert problem["type"] == "yaml"


def test_stored_policies_survive_reopening_the_store(db_url: str, monkeypatch) -> None:
    monkeypatch.setenv("ORB_TEST_CUSTOM", "secret-value")
    state = StateBackend.connect(db_url)
    store = PolicyStore(state)
    store.save("p1", {"config": {"package": "pkg", "custom": "${ORB_TEST_CUSTOM}"}, "scope": {"a": 1}})
    store.save("p2", {"config": {"package": "pkg2"}, "scope": None})
    assert store.delete("p2") is True and store.delete("p2") is False
    state.close()

    state = StateBackend.connect(db_url)
    store = PolicyStore(state)
    assert store.all() == {"p1": {"config": {"package": "pkg", "custom": "${ORB_TEST_CUSTOM}"}, "scope": {"a": 1}}}
    assert store.validated("p1").config.custom == "secret-value"  # type: ignore[attr-defined]
    with pytest.raises(NotFoundError):
        store.validated("p2")
    state.close()
