"""Secrets backends: ``get_secret(key) -> str`` raising :class:`SecretNotFoundError`.

Built in: :class:`EnvSecretsBackend` (``HEADRACE_SECRET_<KEY>`` variables, prefix configurable),
:class:`FileSecretsBackend` (one file per key in a directory, as Docker and Kubernetes mount
secrets) and :class:`DictSecretsBackend` (tests). More come from the entry-point group
``headrace.secrets.backends`` or settings (see :mod:`headrace.plugins`).

Step inputs refer to secrets as ``$secret:KEY`` or ``{{ secrets.KEY }}`` and to the environment as
``$env:VAR`` or ``{{ env.VAR }}``; they are resolved only while a step executes and never stored
resolved (see :mod:`headrace.workflows`).
"""

from __future__ import annotations

import os
import re
from abc import ABC, abstractmethod
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from headrace.errors import ConfigError, SecretNotFoundError

__all__ = [
    "DictSecretsBackend",
    "EnvSecretsBackend",
    "FileSecretsBackend",
    "SecretNotFoundError",
    "SecretsBackend",
    "validate_secret_key",
]

_KEY = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.\-]*$")


def validate_secret_key(key: object) -> str:
    """Returns ``key`` if it is a usable secret name; raises ``ConfigError`` naming it otherwise.

    Keys are letters, digits, ``_``, ``.`` and ``-``; path separators, ``..`` and NUL are refused.
    """
    if not isinstance(key, str) or not key:
        raise ConfigError(f"a secret key must be a non-empty string, got {key!r}")
    if not _KEY.match(key) or ".." in key:
        raise ConfigError(f"secret key {key!r} may contain only letters, digits, '_', '.' and '-' (no '..')")
    return key


class SecretsBackend(ABC):
    """Where secret values come from. Implementations must never log or echo a value."""

    #: The key this backend is registered under.
    key: str = ""
    display_name: str = ""

    @abstractmethod
    def get_secret(self, key: str) -> str:
        """Returns the raw secret value; raises :class:`SecretNotFoundError` if there is none."""

    def has_secret(self, key: str) -> bool:
        try:
            self.get_secret(key)
        except SecretNotFoundError:
            return False
        return True

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.key or 'secrets'}>"


class DictSecretsBackend(SecretsBackend):
    """Secrets held in memory (tests, examples); its repr never shows a value."""

    key = "dict"
    display_name = "In-memory secrets"

    def __init__(self, values: Mapping[str, str] | None = None) -> None:
        self._values = dict(values or {})

    def set(self, key: str, value: str) -> None:
        self._values[validate_secret_key(key)] = value

    def get_secret(self, key: str) -> str:
        validate_secret_key(key)
        try:
            value = self._values[key]
        except KeyError:
            raise SecretNotFoundError(key=key) from None
        if not value:
            raise SecretNotFoundError(f"secret {key!r} is empty", key=key)
        return value


class EnvSecretsBackend(SecretsBackend):
    """Reads ``{prefix}{KEY}`` from the process environment (default prefix ``HEADRACE_SECRET_``)."""

    key = "env"
    display_name = "Environment variables"

    def __init__(self, prefix: str = "HEADRACE_SECRET_") -> None:
        self.prefix = prefix

    @classmethod
    def for_testing(cls, values: Mapping[str, str], tmp_path: Path, monkeypatch: Any) -> EnvSecretsBackend:
        """Seeds ``values`` through ``monkeypatch.setenv`` (used by the contract tests)."""
        for key, value in values.items():
            monkeypatch.setenv(f"HEADRACE_SECRET_{key}", value)
        return cls()

    def get_secret(self, key: str) -> str:
        validate_secret_key(key)
        name = f"{self.prefix}{key}"
        value = os.environ.get(name)
        if value is None:
            raise SecretNotFoundError(f"secret {key!r} was not found (environment variable {name} is not set)", key=key)
        if not value:
            raise SecretNotFoundError(f"secret {key!r} is empty (environment variable {name})", key=key)
        return value


class FileSecretsBackend(SecretsBackend):
    """Reads the file ``{directory}/{KEY}`` (trailing newline stripped), as container runtimes mount secrets."""

    key = "file"
    display_name = "Files in a directory"

    def __init__(self, directory: str | os.PathLike[str] = "/run/secrets") -> None:
        self.directory = Path(directory)

    @classmethod
    def for_testing(cls, values: Mapping[str, str], tmp_path: Path, monkeypatch: Any) -> FileSecretsBackend:
        """Seeds ``values`` as files under ``tmp_path`` (used by the contract tests)."""
        directory = tmp_path / "secrets"
        directory.mkdir(exist_ok=True)
        for key, value in values.items():
            (directory / key).write_text(value + "\n", encoding="utf-8")
        return cls(directory)

    def get_secret(self, key: str) -> str:
        validate_secret_key(key)
        path = self.directory / key
        try:
            value = path.read_text(encoding="utf-8").rstrip("\r\n")
        except FileNotFoundError:
            raise SecretNotFoundError(f"secret {key!r} was not found (no file {path})", key=key) from None
        except IsADirectoryError:
            raise SecretNotFoundError(f"secret {key!r} was not found ({path} is a directory)", key=key) from None
        if not value:
            raise SecretNotFoundError(f"secret {key!r} is empty (file {path})", key=key)
        return value
