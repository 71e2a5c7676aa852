"""pynenc plugin registration: ``PynencBuilder().headrace_state(url, ...)``."""

from __future__ import annotations

from typing import Any

# Importing the backend makes pynenc's subclass lookup find HeadraceStateBackend by name.
from headrace.pynenc.backend import HeadraceStateBackend


class HeadraceBuilderPlugin:
    """Adds ``headrace_state`` to ``PynencBuilder`` (loaded through the ``pynenc.plugins`` entry point)."""

    @staticmethod
    def register_builder_methods(builder_cls: Any) -> None:
        """Registers the builder method on pynenc's builder class."""
        builder_cls.register_plugin_method("headrace_state", headrace_state)


def headrace_state(
    builder: Any,
    url: str = "memory://",
    *,
    durability: str = "durable",
    transitions: str = "record",
    max_batch: int = 5000,
) -> Any:
    """Uses headrace as the app's state backend (the other components stay as configured)."""
    builder._config.update(
        {
            "state_backend_cls": HeadraceStateBackend.__name__,
            "headrace_state_url": url,
            "headrace_durability": durability,
            "headrace_transitions": transitions,
            "headrace_max_batch": max_batch,
        }
    )
    return builder
