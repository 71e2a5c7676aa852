"""Secrets backends and the one redaction rule."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest

from headrace._core import redact_text, redact_value
from headrace.errors import ConfigError, SecretNotFoundError
from headrace.secrets import DictSecretsBackend, EnvSecretsBackend, FileSecretsBackend


def test_env_backend(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HEADRACE_SECRET_STRIPE", "sk_live_1")
    monkeypatch.setenv("APP_STRIPE", "sk_live_2")
    assert EnvSecretsBackend().get_secret("STRIPE") == "sk_live_1"
    assert EnvSecretsBackend(prefix="APP_").get_secret("STRIPE") == "sk_live_2"
    with pytest.raises(SecretNotFoundError) as caught:
        EnvSecretsBackend().get_secret("NOPE")
    assert caught.value.key == "NOPE" and "HEADRACE_SECRET_NOPE" in str(caught.value)
    monkeypatch.setenv("HEADRACE_SECRET_EMPTY", "")
    with pytest.raises(SecretNotFoundError, match="empty"):
        EnvSecretsBackend().get_secret("EMPTY")


def test_file_backend(tmp_path: Path) -> None:
    (tmp_path / "db_password").write_text("pa55word\n")
    backend = FileSecretsBackend(tmp_path)
    assert backend.get_secret("db_password") == "pa55word"
    with pytest.raises(SecretNotFoundError):
        backend.get_secret("missing")
    for bad in ("../etc/passwd", "a/b", "", ".."):
        with pytest.raises(ConfigError):
            backend.get_secret(bad)
    assert "pa55word" not in repr(backend)


def test_dict_backend_never_shows_values() -> None:
    backend = DictSecretsBackend({"K": "v4lue-123"})
    assert backend.get_secret("K") == "v4lue-123"
    assert "v4lue-123" not in repr(backend) and "v4lue-123" not in str(backend)


def test_redaction_is_recursive_and_never_mutates() -> None:
    data = {
        "user": "ann",
        "password": "hunter2",
        "auth": {"api_key": "k-1", "items": [{"token": "t-1"}, "uses s3cr3t-v4lue inline"]},
        "headers": {"Authorization": "Bearer abc", "X-Note": "Bearer xyz"},
        "openai": "sk-proj-abcdefghijklmnopqrstuvwx1234",
        "n": 1,
    }
    before = copy.deepcopy(data)
    out = redact_value(data, ["s3cr3t-v4lue"])
    assert data == before
    assert out["user"] == "ann" and out["n"] == 1
    assert out["password"] == "[REDACTED]" and out["auth"]["api_key"] == "[REDACTED]"
    assert out["auth"]["items"][0]["token"] == "[REDACTED]"
    assert out["auth"]["items"][1] == "uses [REDACTED] inline"
    assert out["headers"] == {"Authorization": "[REDACTED]", "X-Note": "Bearer [REDACTED]"}
    assert out["openai"] == "sk-...1234"
    assert redact_text("failed with s3cr3t-v4lue", ["s3cr3t-v4lue"]) == "failed with [REDACTED]"
