"""Configuration of :class:`~headrace.pynenc.HeadraceStateBackend`, read like every pynenc setting.

Set it in the app's ``config_values``, a pynenc config file or ``PYNENC__...`` environment
variables::

    Pynenc(config_values={
        "state_backend_cls": "HeadraceStateBackend",
        "headrace_state_url": "postgres://user@host/db",   # or sqlite:///path.db, memory://
        "headrace_durability": "durable",                   # or "write_behind"
        "headrace_transitions": "record",                   # or "enforce"
    })
"""

from __future__ import annotations

from cistell import ConfigField
from pynenc.conf.config_state_backend import ConfigStateBackend


class ConfigStateBackendHeadrace(ConfigStateBackend):
    """Settings of the headrace state backend.

    :cvar headrace_state_url: ``memory://``, ``sqlite:///path.db`` or ``postgres://…``.
    :cvar headrace_durability: ``durable`` (pynenc's promise: every write is committed when
        the call returns) or ``write_behind`` (writes are batched in the background; reads and
        ``wait_for_all_async_operations()`` wait for them).
    :cvar headrace_transitions: ``record`` stores every status record as given, as pynenc's
        own state backends do (pynenc's orchestrator checks each change before recording it);
        ``enforce`` also refuses, atomically in the store, any record that pynenc's
        ``status_record_transition`` would refuse (raising pynenc's own exceptions).
    :cvar headrace_max_batch: Most writes one background transaction applies (write-behind).
    """

    headrace_state_url = ConfigField("memory://")
    headrace_durability = ConfigField("durable")
    headrace_transitions = ConfigField("record")
    headrace_max_batch = ConfigField(5000)
