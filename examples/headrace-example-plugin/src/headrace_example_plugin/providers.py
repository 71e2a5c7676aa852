"""A local LLM provider that answers in capitals."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from headrace.providers import LLMProvider


class ShoutProvider(LLMProvider):
    key = "example_shout"
    display_name = "Example shout"

    def chat(self, messages: Sequence[Mapping[str, Any]], options: Mapping[str, Any] | None = None) -> str:
        return str(messages[-1]["content"]).upper()

    def count_tokens(self, text: str) -> int:
        return len(text.split())
