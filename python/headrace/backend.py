"""The integration base class (orb-worker's ``worker.backend``).

Subclass :class:`Backend`, implement the :meth:`Backend.describe` classmethod and
:meth:`Backend.run`, and point a policy's ``config.package`` at your module::

    from headrace import Backend, Metadata

    class Inventory(Backend):
        @classmethod
        def describe(cls) -> Metadata:
            return Metadata(name="inventory", app_name="acme-inventory", app_version="1.0.0")

        def run(self, policy_name, policy, **kwargs):
            yield {"name": "router-1", "site": {"name": policy.scope["site"]}}

The runner reads the metadata from the class, builds the ingest callback, then constructs the
backend once with ``ingest_callback=`` (and ``ingest_sink=``) already valid, so ``run()`` or any
other thread may call ``self.ingest_callback(entities=...)`` at any time.

Legacy backends that implement only the instance method ``setup()`` still load: the runner reads
their metadata from a throwaway instance. ``setup()`` is deprecated (removal planned for 2.0):
type checkers flag it (PEP 702), defining such a class raises a ``DeprecationWarning``, and the
runner logs the fallback on the ``headrace.runner`` logger.
"""

from __future__ import annotations

from typing_extensions import deprecated

from headrace._core import Backend
from headrace.orb.models import Metadata

__all__ = ["SETUP_DEPRECATION", "Backend", "Metadata"]

SETUP_DEPRECATION = (
    "Backend.setup() is deprecated: implement the describe() classmethod instead "
    "(the setup() fallback will be removed in headrace 2.0)"
)


@deprecated(SETUP_DEPRECATION, category=DeprecationWarning)
def _setup(self: Backend) -> Metadata:
    """Legacy: this backend's :class:`Metadata`. Deprecated: implement :meth:`Backend.describe`."""
    raise NotImplementedError(
        f"{type(self).__qualname__} implements neither describe() nor setup(): "
        "define `@classmethod def describe(cls) -> Metadata`"
    )


_setup.__name__ = "setup"
_setup.__qualname__ = "Backend.setup"
# The PyO3 class is a mutable heap type: the PEP 702 wrapper lives on the class itself, so
# ``Backend.setup.__deprecated__`` is set and calling the base method warns.
Backend.setup = _setup  # type: ignore[method-assign]
