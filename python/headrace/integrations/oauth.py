"""Named OAuth clients that integrations connect through."""

from __future__ import annotations

from typing import Any


class OAuthClientRegistry:
    """Named OAuth clients that integrations connect through; only enabled ones are returned."""

    def __init__(self) -> None:
        self._clients: dict[str, tuple[Any, bool]] = {}

    def register(self, name: str, client: Any, *, enabled: bool = True) -> None:
        self._clients[name] = (client, enabled)

    def unregister(self, name: str) -> None:
        self._clients.pop(name, None)

    def enabled(self, name: str) -> Any | None:
        client, enabled = self._clients.get(name, (None, False))
        return client if enabled else None


oauth_clients = OAuthClientRegistry()
