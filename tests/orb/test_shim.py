"""Packages written for orb-worker import ``worker.*`` unchanged: headrace provides those modules
when the real orb-worker is missing and never shadows it when it is installed."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

from orb_helpers import ROOT, orb_python

from headrace.orb.shim import WorkerModuleFinder, install_worker_modules, worker_modules_source


def test_headrace_provides_the_worker_modules_when_orb_worker_is_missing() -> None:
    import worker.backend
    import worker.exceptions
    import worker.models

    import headrace
    from headrace.errors import IngestError
    from headrace.orb import models

    assert worker_modules_source() == "headrace"
    assert worker.backend.Backend is headrace.Backend
    assert worker.models.Metadata is models.Metadata
    assert worker.exceptions.IngestError is IngestError
    assert install_worker_modules() is False, "installing twice adds no second finder"
    assert sum(isinstance(f, WorkerModuleFinder) for f in sys.meta_path) == 1
    names = [f.__name__ if isinstance(f, type) else type(f).__name__ for f in sys.meta_path]
    assert names.index("PathFinder") < names.index("WorkerModuleFinder"), names


def test_the_ingest_sink_protocol_is_runtime_checkable_and_load_class_works() -> None:
    from orb_describe_backend import DescribeBackend
    from worker.backend import IngestSink, load_class

    class Sink:
        def ingest(self, entities, **kwargs): ...
        def record_failure(self, error, **kwargs): ...

    assert isinstance(Sink(), IngestSink)
    assert not isinstance(object(), IngestSink)
    assert load_class("orb_describe_backend") is DescribeBackend


def test_a_real_orb_worker_always_wins() -> None:
    script = textwrap.dedent(
        """
        import sys
        from headrace.orb.shim import install_worker_modules, worker_modules_source
        install_worker_modules()
        import worker.backend, worker.models
        assert worker_modules_source() == "orb-worker", worker_modules_source()
        assert "site-packages" in worker.backend.__file__, worker.backend.__file__
        import headrace
        assert worker.backend.Backend is not headrace.Backend
        print("ok", worker.models.__file__)
        """
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT / "python")}
    result = subprocess.run([str(orb_python()), "-c", script], env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("ok ")
