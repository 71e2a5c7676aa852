"""The registry of integration implementations: the plugin registry of kind ``integrations``.

Entry points (group ``headrace.integrations``), settings lists and dotted paths are discovered by
:mod:`headrace.plugins`, the one owner of plugin discovery; ``registry`` here is
``headrace.plugins.registry("integrations")``, so ``headrace plugins`` lists what it holds.
"""

from __future__ import annotations

from headrace.plugins import INTEGRATIONS, IntegrationRegistry, import_dotted

__all__ = ["ENTRY_POINT_GROUP", "Registry", "import_dotted", "registry"]

ENTRY_POINT_GROUP = "headrace.integrations"

#: A fresh registry of integration implementations (tests, or a second set beside the default).
Registry = IntegrationRegistry

#: The process-wide registry (``headrace.plugins.registry("integrations")``).
registry = INTEGRATIONS
