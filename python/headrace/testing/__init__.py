"""Test helpers for plugin authors: contract base classes and pytest fixtures.

Subclass a contract with one attribute and pytest runs every check against your class::

    from headrace.testing import ConnectorContractTest

    class TestMyConnector(ConnectorContractTest):
        adapter_cls = MyConnector

The fixtures ``headrace_outbox``, ``headrace_state`` and ``headrace_worker`` (temporary SQLite)
are available with ``pytest_plugins = ["headrace.testing.fixtures"]``.
"""

from headrace.testing.contracts import (
    BackendContractTest,
    ConnectorContractTest,
    ProviderContractTest,
    QueuedClientContractTest,
    SecretsBackendContractTest,
)

__all__ = [
    "BackendContractTest",
    "ConnectorContractTest",
    "ProviderContractTest",
    "QueuedClientContractTest",
    "SecretsBackendContractTest",
]
