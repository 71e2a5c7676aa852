"""``--otel-endpoint``: headrace's policy metrics reach a real OTLP/gRPC collector (an in-process
server implementing OpenTelemetry's ``MetricsService``), and a missing exporter is a usage error,
never a silent loss of the metrics asked for."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import threading
from collections.abc import Iterator
from concurrent import futures
from typing import Any

import pytest

grpc = pytest.importorskip("grpc")
metrics_service = pytest.importorskip("opentelemetry.proto.collector.metrics.v1.metrics_service_pb2_grpc")
from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2  # noqa: E402

EXPORTING_PROCESS = textwrap.dedent(
    """
    import sys

    from opentelemetry import metrics

    from headrace import Backend, Metadata
    from headrace.orb.cli import setup_metrics_export
    from headrace.runner import NullSink, PolicyManager

    setup_metrics_export(sys.argv[1], 60)


    class Tiny(Backend):
        @classmethod
        def describe(cls):
            return Metadata(name="tiny", app_name="tests", app_version="1")

        def run(self, policy_name, policy, **kwargs):
            yield {"device": {"name": "d1"}}


    manager = PolicyManager(sink=NullSink())
    policies = {"policies": {"otel": {"config": {"package": "__main__:Tiny"}, "scope": {}}}}
    manager.start_policies(policies, schedule=False)
    assert manager.run_now("otel").status == "completed"
    assert metrics.get_meter_provider().force_flush(30_000), "the export did not finish"
    manager.stop()
    """
)


class RecordingCollector(metrics_service.MetricsServiceServicer):  # type: ignore[misc,name-defined]
    """Keeps ``(metric name, attributes, value)`` of every data point it is sent."""

    def __init__(self) -> None:
        self.points: list[tuple[str, dict[str, str], float]] = []
        self._lock = threading.Lock()

    def Export(self, request: Any, context: Any) -> Any:
        with self._lock:
            for resource in request.resource_metrics:
                for scope in resource.scope_metrics:
                    for metric in scope.metrics:
                        data = getattr(metric, metric.WhichOneof("data"))
                        for point in data.data_points:
                            attributes = {a.key: a.value.string_value for a in point.attributes}
                            value = point.as_int if point.WhichOneof("value") == "as_int" else point.as_double
                            self.points.append((metric.name, attributes, value))
        return metrics_service_pb2.ExportMetricsServiceResponse()


@pytest.fixture
def collector() -> Iterator[tuple[RecordingCollector, str]]:
    recording = RecordingCollector()
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    metrics_service.add_MetricsServiceServicer_to_server(recording, server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        yield recording, f"http://127.0.0.1:{port}"
    finally:
        server.stop(grace=None)


def test_policy_metrics_reach_the_otlp_collector(collector: tuple[RecordingCollector, str]) -> None:
    recording, endpoint = collector
    done = subprocess.run(
        [sys.executable, "-c", EXPORTING_PROCESS, endpoint], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr[-3000:]
    runs = {
        attributes.get("status"): value
        for name, attributes, value in recording.points
        if name == "headrace.policy.runs" and attributes.get("policy") == "otel"
    }
    assert runs.get("completed") == 1, recording.points


def test_without_the_exporter_otel_endpoint_is_a_usage_error(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from headrace.orb.cli import main

    # An interpreter without the exporter: importing it fails.
    monkeypatch.setitem(sys.modules, "opentelemetry.exporter.otlp.proto.grpc.metric_exporter", None)
    with pytest.raises(SystemExit) as exited:
        main(["--dry-run", "--otel-endpoint", "http://127.0.0.1:4317"])
    assert exited.value.code == 2
    err = capsys.readouterr().err
    assert "--otel-endpoint 'http://127.0.0.1:4317' needs the OpenTelemetry OTLP exporter" in err
    assert "pip install 'headrace[orb]'" in err


def test_a_non_positive_export_period_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    from headrace.orb.cli import main

    with pytest.raises(SystemExit) as exited:
        main(["--dry-run", "--otel-endpoint", "http://127.0.0.1:4317", "--otel-export-period", "0"])
    assert exited.value.code == 2
    assert "--otel-export-period must be a positive number of seconds, got 0" in capsys.readouterr().err
