"""Package entry point, as orb-worker packages are laid out: only the backend class is
exported (orb-worker loads the first Backend subclass the package module holds)."""

from .impl import MockBackend

__all__ = ["MockBackend"]
