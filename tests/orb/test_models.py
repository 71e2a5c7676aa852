"""The policy models are pydantic v2 models with orb-worker's fields, defaults and validation:
everything a backend may call on them works."""

from __future__ import annotations

import pickle
from typing import Any

import pytest
from pydantic import BaseModel, ValidationError

from headrace.orb.models import Config, DiodeConfig, Metadata, Policy, PolicyRequest, Status


def policy() -> Policy:
    return Policy.model_validate(
        {"config": {"package": "pkg", "schedule": "*/5 * * * *", "custom": "x"}, "scope": {"target": "h", "port": 22}}
    )


def test_policy_has_pydantics_surface() -> None:
    p = policy()
    dumped = p.model_dump_json()
    assert '"custom":"x"' in dumped and '"package":"pkg"' in dumped
    assert Policy.model_validate_json(dumped) == p
    assert p.model_dump(mode="json")["config"] == {"package": "pkg", "schedule": "*/5 * * * *", "custom": "x"}
    assert p.config.custom == "x"  # type: ignore[attr-defined]
    copy = p.model_copy(deep=True)
    assert copy == p and copy is not p
    copy.config.package = "other"
    assert p.config.package == "pkg"
    assert pickle.loads(pickle.dumps(p)) == p
    assert "Some(" not in repr(p) and "package='pkg'" in repr(p)
    assert p != policy().model_copy(update={"scope": None})


def test_models_subclass_and_nest_as_pydantic_fields() -> None:
    class MyConfig(Config):
        custom: str

    class Wrapper(BaseModel):
        policy: Policy
        metadata: Metadata

    c = MyConfig(package="p", custom="v")
    assert c.custom == "v"
    w = Wrapper.model_validate(
        {
            "policy": {"config": {"package": "p"}, "scope": [1]},
            "metadata": {"name": "n", "app_name": "a", "app_version": "1"},
        }
    )
    assert w.policy.scope == [1] and w.metadata.description is None


def test_missing_scope_is_an_error_as_upstream_but_none_is_a_value() -> None:
    with pytest.raises(ValidationError) as info:
        Policy.model_validate({"config": {"package": "p"}})
    assert info.value.errors()[0]["loc"] == ("scope",)
    assert info.value.errors()[0]["type"] == "missing"
    assert Policy(config=Config(package="p"), scope=None).scope is None


@pytest.mark.parametrize("schedule", ["* * * *", "61 * * * *", "not cron"])
def test_bad_cron_fails_at_construction_naming_it(schedule: str) -> None:
    with pytest.raises(ValidationError) as info:
        Config(package="p", schedule=schedule)
    error = info.value.errors()[0]
    assert error["loc"] == ("schedule",)
    assert "Invalid cron schedule format" in error["msg"]


def test_timezone_is_utc_local_or_an_iana_name() -> None:
    assert Config(package="p", schedule="0 3 * * *", timezone="UTC").timezone == "UTC"  # type: ignore[attr-defined]
    berlin = Config(package="p", schedule="0 3 * * *", timezone="Europe/Berlin")
    assert berlin.timezone == "Europe/Berlin"  # type: ignore[attr-defined]
    with pytest.raises(ValidationError, match='timezone "Mars/Base" is not a known IANA time zone'):
        Config(package="p", timezone="Mars/Base")


def test_a_named_zone_moves_the_fire_time_with_daylight_saving() -> None:
    from datetime import datetime, timezone

    from headrace._core import next_cron_time

    winter = datetime(2030, 1, 1, tzinfo=timezone.utc)
    summer = datetime(2030, 7, 1, tzinfo=timezone.utc)
    assert next_cron_time("0 3 * * *", winter, timezone="Europe/Berlin").isoformat() == "2030-01-01T02:00:00+00:00"
    assert next_cron_time("0 3 * * *", summer, timezone="Europe/Berlin").isoformat() == "2030-07-01T01:00:00+00:00"


def test_cron_follows_the_workers_local_time_zone() -> None:
    import os
    import subprocess
    import sys

    script = (
        "from datetime import datetime, timezone; from headrace._core import next_cron_time; "
        "after = datetime(2030, 1, 1, tzinfo=timezone.utc); "
        "print(next_cron_time('0 0 * * *', after, local=True).isoformat(), "
        "next_cron_time('0 0 * * *', after).isoformat())"
    )
    out = subprocess.run(
        [sys.executable, "-c", script],
        env={**os.environ, "TZ": "Asia/Kolkata"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    local, utc = out.stdout.split()
    assert local == "2030-01-01T18:30:00+00:00"  # midnight in Kolkata (UTC+05:30)
    assert utc == "2030-01-02T00:00:00+00:00"


def test_package_is_required_and_extra_keys_are_kept() -> None:
    with pytest.raises(ValidationError):
        Config.model_validate({"schedule": None})
    c = Config.model_validate({"package": "p", "nested": {"a": [1, 2]}})
    assert c.model_extra == {"nested": {"a": [1, 2]}}


def test_policy_request_diode_config_status_and_metadata() -> None:
    request = PolicyRequest.model_validate({"policies": {"a": {"config": {"package": "p"}, "scope": {}}}})
    assert list(request.policies) == ["a"]
    assert DiodeConfig().dry_run is False and DiodeConfig().target is None
    assert Status("running") is Status.RUNNING
    meta: Any = Metadata(name="n", app_name="a", app_version="1")
    meta.description = "changed"
    assert meta.model_dump() == {"name": "n", "app_name": "a", "app_version": "1", "description": "changed"}


def test_worker_models_are_these_classes() -> None:
    import worker.exceptions
    import worker.models

    from headrace.errors import IngestRejected

    assert worker.models.Policy is Policy
    assert worker.exceptions.IngestRejected is IngestRejected
