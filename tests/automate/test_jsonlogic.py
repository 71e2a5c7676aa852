"""JsonLogic conditions evaluated in Rust: truth tables, unknown operators, depth, variables."""

from __future__ import annotations

import itertools
from typing import Any

import pytest

from headrace._core import jsonlogic_apply, jsonlogic_check, jsonlogic_matches
from headrace.errors import ConfigError
from headrace.workflows import Step, Trigger, Workflow

DATA = {
    "event": {"type": "order.created", "source": "shop", "payload": {"total": 120, "tags": ["vip"], "country": "DE"}},
    "context": {"tenant": "acme"},
}

COMPARISONS: list[tuple[dict[str, Any], bool]] = [
    ({"==": [1, 1]}, True),
    ({"==": [1, "1"]}, True),
    ({"==": [1, 2]}, False),
    ({"==": [None, None]}, True),
    ({"==": [None, 0]}, False),
    ({"!=": [1, 2]}, True),
    ({"!=": ["a", "a"]}, False),
    ({">": [3, 2]}, True),
    ({">": [2, 2]}, False),
    ({">=": [2, 2]}, True),
    ({">=": [1, 2]}, False),
    ({"<": [1, 2]}, True),
    ({"<": [2, 1]}, False),
    ({"<=": [2, 2]}, True),
    ({"<=": [3, 2]}, False),
    ({"<": [1, 5, 10]}, True),
    ({"<": [1, 10, 10]}, False),
    ({"in": ["vip", {"var": "event.payload.tags"}]}, True),
    ({"in": ["new", {"var": "event.payload.tags"}]}, False),
    ({"in": ["ord", {"var": "event.type"}]}, True),
    ({">": [{"var": "event.payload.total"}, 100]}, True),
    ({"==": [{"var": "context.tenant"}, "acme"]}, True),
    ({"==": [{"var": "event.payload.missing"}, None]}, True),
]


@pytest.mark.parametrize(("rule", "expected"), COMPARISONS, ids=[str(r) for r, _ in COMPARISONS])
def test_comparison_truth_table(rule: dict[str, Any], expected: bool) -> None:
    assert jsonlogic_matches(rule, DATA) is expected


@pytest.mark.parametrize(("a", "b"), list(itertools.product([True, False], repeat=2)))
def test_logic_truth_table(a: bool, b: bool) -> None:
    assert jsonlogic_matches({"and": [a, b]}, DATA) is (a and b)
    assert jsonlogic_matches({"or": [a, b]}, DATA) is (a or b)
    assert jsonlogic_matches({"!": [a]}, DATA) is (not a)
    assert jsonlogic_matches({"and": [{"!": [a]}, {"or": [a, b]}]}, DATA) is ((not a) and (a or b))


def test_and_or_return_jsonlogic_values() -> None:
    assert jsonlogic_apply({"or": [0, "", "x"]}, DATA) == "x"
    assert jsonlogic_apply({"and": [1, 0, 2]}, DATA) == 0
    assert jsonlogic_apply({"var": ["event.payload.nope", "fallback"]}, DATA) == "fallback"


@pytest.mark.parametrize(
    "rule",
    [
        {"regex": ["a", "a"]},
        {"and": [True, {"bogus": [1]}]},
        {"or": [True, {"unknown_op": []}]},
        {"!": [{"always": True}]},
    ],
)
def test_an_unknown_operator_is_an_error_never_a_match(rule: dict[str, Any]) -> None:
    with pytest.raises(ConfigError, match="unknown JsonLogic operator"):
        jsonlogic_matches(rule, DATA)
    with pytest.raises(ConfigError, match="unknown JsonLogic operator"):
        Workflow("w", Trigger("order.*"), [Step("s", "echo", "echo")], conditions=rule)


def test_nesting_depth_is_limited() -> None:
    rule: Any = True
    for _ in range(40):
        rule = {"!": [rule]}
    with pytest.raises(ConfigError, match="deeper than"):
        jsonlogic_check(rule)


def test_variables_come_only_from_event_and_context() -> None:
    assert jsonlogic_apply({"var": "env.PATH"}, DATA) is None
    assert jsonlogic_apply({"var": "__class__"}, DATA) is None


def test_workflow_match_uses_glob_trigger_and_conditions() -> None:
    wf = Workflow(
        "big_orders",
        Trigger(event_type="order.*", source="shop"),
        [Step("s", "echo", "echo")],
        conditions={"and": [{">": [{"var": "event.payload.total"}, 100]}, {"==": [{"var": "context.tenant"}, "acme"]}]},
    )
    event = {"source": "shop", "type": "order.created", "payload": {"total": 120}}
    assert wf.matches(event, {"tenant": "acme"})
    assert not wf.matches({**event, "payload": {"total": 50}}, {"tenant": "acme"})
    assert not wf.matches({**event, "type": "refund.created"}, {"tenant": "acme"})
    assert not wf.matches({**event, "source": "other"}, {"tenant": "acme"})
    assert not wf.matches(event, {"tenant": "other"})
    inactive = Workflow("off", Trigger("order.*"), [Step("s", "echo", "echo")], active=False)
    assert not inactive.matches(event)
