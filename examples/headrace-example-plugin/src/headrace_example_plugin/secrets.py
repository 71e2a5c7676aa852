"""Secrets from a JSON object file (path from the constructor or ``$EXAMPLE_SECRETS_FILE``)."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from headrace.secrets import SecretNotFoundError, SecretsBackend, validate_secret_key


class JsonFileSecretsBackend(SecretsBackend):
    key = "example_json"
    display_name = "Example JSON file"

    def __init__(self, path: str | os.PathLike[str] | None = None) -> None:
        self.path = Path(path or os.environ.get("EXAMPLE_SECRETS_FILE", "secrets.json"))

    @classmethod
    def for_testing(cls, values: Mapping[str, str], tmp_path: Path, monkeypatch: Any) -> JsonFileSecretsBackend:
        path = tmp_path / "example-secrets.json"
        path.write_text(json.dumps(dict(values)), encoding="utf-8")
        return cls(path)

    def get_secret(self, key: str) -> str:
        validate_secret_key(key)
        try:
            values = json.loads(self.path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise SecretNotFoundError(f"secret {key!r} was not found (no file {self.path})", key=key) from None
        value = values.get(key)
        if not isinstance(value, str) or not value:
            raise SecretNotFoundError(key=key)
        return value
