"""pynenc's exported unit state-backend suite, unmodified, against headrace on every store.

Imported from the installed ``pynenc_tests`` package (shipped in pynenc's wheel) exactly as
pynenc tells plugin authors to; ``conftest.py``'s ``app_instance`` runs each test on memory,
SQLite and PostgreSQL. (The unit and integration suites define fixtures of the same name, so
each has its own module.)
"""

# ruff: noqa: F403
from pynenc_tests.unit.state_backend.all_tests import *
