"""Step-input templates: minijinja in Rust, strict, sandboxed, with filters registered from Python."""

from __future__ import annotations

from typing import Any

import pytest

from headrace.errors import ConfigError, SecretNotFoundError, TemplateError
from headrace.secrets import DictSecretsBackend
from headrace.workflows import FilterRegistry, render_input

CONTEXT = {
    "event": {
        "type": "order.created",
        "source": "shop",
        "payload": {"channel_id": "C42", "total": 1234.5, "lines": [1, 2]},
    },
    "execution": {"id": "run-1", "name": "Orders"},
    "steps": {"calculate": {"output": {"total": 99.5}}},
}


@pytest.fixture
def filters() -> FilterRegistry:
    registry = FilterRegistry()

    @registry.register("format_currency")
    def format_currency(value: float, currency: str = "USD") -> str:
        return f"{currency} {value:,.2f}"

    return registry


def test_the_seed_example_renders(filters: FilterRegistry) -> None:
    rendered, resolved = render_input(
        {
            "channel": "{{ event.payload.channel_id }}",
            "message": "Order total: {{ steps.calculate.output.total | format_currency('EUR') }}",
            "big": "{{ event.payload.total | format_currency(currency='GBP') }}",
        },
        CONTEXT,
        filters=filters,
    )
    assert rendered == {"channel": "C42", "message": "Order total: EUR 99.50", "big": "GBP 1,234.50"}
    assert resolved == []


def test_nested_inputs_keep_their_types(filters: FilterRegistry) -> None:
    rendered, _ = render_input(
        {
            "a": [1, 2.5, True, None, {"b": "{{ execution.id }}"}],
            "total": "{{ event.payload.total }}",
            "lines": "{{ event.payload.lines }}",
            "text": "n={{ event.payload.total }}",
        },
        CONTEXT,
        filters=filters,
    )
    assert rendered == {"a": [1, 2.5, True, None, {"b": "run-1"}], "total": 1234.5, "lines": [1, 2], "text": "n=1234.5"}


def test_a_missing_variable_fails_with_its_name(filters: FilterRegistry) -> None:
    with pytest.raises(TemplateError) as caught:
        render_input({"to": {"email": "{{ event.payload.customer.email }}"}}, CONTEXT, filters=filters)
    assert caught.value.variable == "event.payload.customer"
    assert "event.payload.customer" in str(caught.value)
    assert "/to/email" in str(caught.value)
    with pytest.raises(TemplateError) as caught:
        render_input({"x": "{{ steps.missing_step.output.id }}"}, CONTEXT, filters=filters)
    assert caught.value.variable == "steps.missing_step"


def test_secrets_by_attribute_item_and_reference(filters: FilterRegistry) -> None:
    secrets = DictSecretsBackend({"STRIPE_KEY": "sk_live_abc123", "SLACK_TOKEN": "xoxb-777"})
    rendered, resolved = render_input(
        {"a": "{{ secrets.STRIPE_KEY }}", "b": "Bearer {{ secrets['SLACK_TOKEN'] }}", "c": "$secret:SLACK_TOKEN"},
        CONTEXT,
        secrets=secrets,
        filters=filters,
    )
    assert rendered == {"a": "sk_live_abc123", "b": "Bearer xoxb-777", "c": "xoxb-777"}
    assert set(resolved) == {"sk_live_abc123", "xoxb-777"}


@pytest.mark.parametrize("template", ["{{ secrets.NOPE }}", "x {{ secrets['NOPE'] }}", "$secret:NOPE"])
def test_a_missing_secret_raises_the_typed_error(filters: FilterRegistry, template: str) -> None:
    with pytest.raises(SecretNotFoundError) as caught:
        render_input({"k": template}, CONTEXT, secrets=DictSecretsBackend({}), filters=filters)
    assert caught.value.key == "NOPE"


def test_env_is_resolved_and_can_be_restricted(filters: FilterRegistry) -> None:
    env = {"REGION": "eu-west-1", "DATABASE_URL": "postgres://x"}
    rendered, _ = render_input({"r": "$env:REGION", "s": "{{ env.REGION }}"}, CONTEXT, environ=env, filters=filters)
    assert rendered == {"r": "eu-west-1", "s": "eu-west-1"}
    with pytest.raises(TemplateError) as caught:
        render_input({"d": "{{ env.DATABASE_URL }}"}, CONTEXT, environ=env, allowed_env={"REGION"}, filters=filters)
    assert caught.value.variable == "env.DATABASE_URL"


@pytest.mark.parametrize(
    "evil",
    [
        "{{ ''.__class__.__mro__ }}",
        "{{ event.__dict__ }}",
        "{{ secrets.__init__ }}",
        "{% for i in range(10000000) %}{% endfor %}",
        "{% include 'etc/passwd' %}",
    ],
)
def test_the_sandbox_has_no_way_out(filters: FilterRegistry, evil: str) -> None:
    with pytest.raises((TemplateError, ConfigError, SecretNotFoundError)):
        render_input({"x": evil}, CONTEXT, filters=filters)


def test_registering_a_filter_twice_is_a_reported_conflict(filters: FilterRegistry) -> None:
    def other(value: Any) -> str:
        return str(value)

    with pytest.raises(ConfigError, match="already registered") as caught:
        filters.register("format_currency", other)
    assert "format_currency" in str(caught.value) and "other" in str(caught.value)
    filters.register("format_currency", other, replace=True)
    rendered, _ = render_input({"x": "{{ 5 | format_currency }}"}, CONTEXT, filters=filters)
    assert rendered == {"x": "5"}


def test_a_raising_filter_fails_the_render(filters: FilterRegistry) -> None:
    @filters.register("explode")
    def explode(value: Any) -> Any:
        raise ValueError("nope")

    with pytest.raises(TemplateError, match=r"explode|nope|filter"):
        render_input({"x": "{{ 1 | explode }}"}, CONTEXT, filters=filters)


def test_the_default_registry_decorator() -> None:
    from headrace.workflows import default_filters, register_filter

    @register_filter("hr_test_shout")
    def shout(value: str) -> str:
        return value.upper()

    try:
        rendered, _ = render_input({"x": "{{ 'hi' | hr_test_shout }}"}, CONTEXT)
        assert rendered == {"x": "HI"}
        with pytest.raises(ConfigError):
            register_filter("hr_test_shout", lambda v: v)
    finally:
        default_filters.unregister("hr_test_shout")
