"""The integration descriptors: :class:`IntegrationImpl`, its null case and :class:`Client`."""

from __future__ import annotations

from typing import Any, ClassVar

from headrace.errors import NotFoundError
from headrace.integrations.oauth import oauth_clients


class IntegrationImpl:
    """Base descriptor for one record-selected integration implementation."""

    #: Registry key; defaults to the class's dotted path.
    key: ClassVar[str] = ""
    label: ClassVar[str] = ""
    category: ClassVar[str] = "integration"
    #: Name (or ``{vendor}`` template) of the OAuth client to connect through.
    oauth_client: ClassVar[str | None] = None

    def __init__(self, integration: Any = None) -> None:
        self.integration = integration

    @classmethod
    def registry_key(cls) -> str:
        return cls.key or f"{cls.__module__}.{cls.__qualname__}"

    @property
    def vendor_slug(self) -> str | None:
        """The bound integration's vendor slug (``vendor_slug``, ``vendor.slug`` or ``vendor``)."""
        record = self.integration
        if record is None:
            return None
        slug = getattr(record, "vendor_slug", None)
        if slug is None:
            vendor = getattr(record, "vendor", None)
            slug = getattr(vendor, "slug", vendor)
        return str(slug) if slug else None

    def connect_oauth_client(self, owner_label: str) -> Any:
        """The enabled OAuth client this integration connects through.

        Uses the ``oauth_client`` hint, else the vendor slug; ``{vendor}`` in the hint is filled
        with the vendor slug. Raises ``NotFoundError`` when no such client is enabled.
        """
        vendor = self.vendor_slug
        hint = self.oauth_client or vendor
        if not hint:
            raise NotFoundError(
                f"{owner_label}: {type(self).__name__} declares no oauth_client and its integration "
                "has no vendor slug to fall back on"
            )
        if "{vendor}" in hint and not vendor:
            raise NotFoundError(f"{owner_label}: oauth_client {hint!r} needs a vendor slug, and there is none")
        name = hint.format(vendor=vendor)
        client = oauth_clients.enabled(name)
        if client is None:
            raise NotFoundError(f"{owner_label}: no enabled OAuth client named {name!r}")
        return client

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.integration!r})"


class NullIntegrationImpl(IntegrationImpl):
    """Neutral implementation for a draft record with no chosen implementation."""

    key = ""
    label = "No implementation"


class Client(IntegrationImpl):
    """Base descriptor for an outbound client: it calls out to an external service."""

    category = "client"
