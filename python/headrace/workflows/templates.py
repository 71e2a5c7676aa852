"""Step-input templates: minijinja in Rust, sandboxed and strict, with filters from Python.

``register_filter("format_currency")`` adds a filter to the default registry; registering a
name that is already taken raises ``ConfigError`` naming both functions (pass ``replace=True``
to mean it). The template context is ``event``, ``execution``, ``steps.<id>.output``, ``secrets``
and ``env``; ``secrets.KEY``, ``secrets["KEY"]`` and ``"$secret:KEY"`` resolve through the
secrets backend only while a step renders.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Collection, Mapping
from typing import TYPE_CHECKING, Any, TypeVar

from headrace._core import TemplateRenderer
from headrace.errors import ConfigError, SecretNotFoundError, TemplateError
from headrace.secrets import SecretsBackend

if TYPE_CHECKING:
    from headrace.workflows.definition import Workflow

__all__ = [
    "FilterRegistry",
    "TemplateError",
    "check_templates",
    "default_filters",
    "register_filter",
    "render_input",
]

F = TypeVar("F", bound=Callable[..., Any])


def _describe(func: Callable[..., Any]) -> str:
    return f"{getattr(func, '__module__', '?')}.{getattr(func, '__qualname__', repr(func))}"


class FilterRegistry:
    """Named template filters; the renderer is rebuilt when the set changes."""

    def __init__(self) -> None:
        self._filters: dict[str, Callable[..., Any]] = {}
        self._lock = threading.Lock()
        self._renderer: TemplateRenderer | None = None

    def register(self, name: str, func: Callable[..., Any] | None = None, *, replace: bool = False) -> Any:
        """Registers ``func`` as filter ``name``; usable as ``@registry.register("name")``."""
        if not isinstance(name, str) or not name.isidentifier():
            raise ConfigError(f"a filter name must be an identifier, got {name!r}")

        def add(f: F) -> F:
            if not callable(f):
                raise ConfigError(f"filter {name!r} must be callable, got {f!r}")
            with self._lock:
                existing = self._filters.get(name)
                if existing is not None and existing is not f and not replace:
                    raise ConfigError(
                        f"template filter {name!r} is already registered by {_describe(existing)}; "
                        f"{_describe(f)} conflicts with it (pass replace=True to replace it)"
                    )
                self._filters[name] = f
                self._renderer = None
            return f

        return add if func is None else add(func)

    def unregister(self, name: str) -> None:
        with self._lock:
            self._filters.pop(name, None)
            self._renderer = None

    def names(self) -> list[str]:
        return sorted(self._filters)

    def renderer(self) -> TemplateRenderer:
        with self._lock:
            if self._renderer is None:
                self._renderer = TemplateRenderer(sorted(self._filters.items()))
            return self._renderer


default_filters = FilterRegistry()


def register_filter(name: str, func: Callable[..., Any] | None = None, *, replace: bool = False) -> Any:
    """Registers a filter in the default registry: ``@register_filter("format_currency")``."""
    return default_filters.register(name, func, replace=replace)


def check_templates(workflow: Workflow, filters: FilterRegistry | None = None) -> None:
    """Compiles every step input of ``workflow`` with ``filters`` (default: the default registry);
    raises :class:`TemplateError` for a template that does not compile or an unknown filter."""
    (filters or default_filters).renderer().check([s.to_dict()["input"] for s in workflow.steps])


def render_input(
    input: Mapping[str, Any],
    context: Mapping[str, Any],
    *,
    secrets: SecretsBackend | None = None,
    environ: Mapping[str, str] | None = None,
    allowed_env: Collection[str] | None = None,
    filters: FilterRegistry | None = None,
) -> tuple[Any, list[str]]:
    """Renders a step input; returns ``(rendered, resolved_values)``.

    Raises :class:`TemplateError` (``.variable`` names a missing variable) or
    :class:`SecretNotFoundError`.
    """
    env_source = os.environ if environ is None else environ

    def lookup(kind: str, key: str) -> str | None:
        if kind == "secret":
            if secrets is None:
                return None
            try:
                return secrets.get_secret(key)
            except SecretNotFoundError:
                return None
        if allowed_env is not None and key not in allowed_env:
            return None
        return env_source.get(key)

    renderer = (filters or default_filters).renderer()
    rendered, resolved = renderer.render(dict(input), dict(context), lookup)
    return rendered, list(resolved)


__all__ += ["SecretNotFoundError"]
