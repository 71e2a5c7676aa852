"""headrace as a pynenc 0.4 state backend (``pip install headrace[pynenc]``, Python ≥ 3.12).

A pynenc app selects it by configuration alone (``state_backend_cls="HeadraceStateBackend"``),
or with ``PynencBuilder().headrace_state(url)``: the package registers itself under pynenc's
``pynenc.plugins`` entry points.
"""

from headrace.pynenc.backend import HeadraceStateBackend
from headrace.pynenc.builder import HeadraceBuilderPlugin
from headrace.pynenc.config import ConfigStateBackendHeadrace

__all__ = ["ConfigStateBackendHeadrace", "HeadraceBuilderPlugin", "HeadraceStateBackend"]
