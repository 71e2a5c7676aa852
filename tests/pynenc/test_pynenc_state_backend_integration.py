"""pynenc's exported integration state-backend suite, unmodified, against headrace on every
store (see ``test_pynenc_state_backend_unit.py``)."""

# ruff: noqa: F403
from pynenc_tests.integration.state_backend.all_tests import *
