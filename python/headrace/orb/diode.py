"""``DiodeSink``: a run's chunks to Diode through the diode SDK's own clients.

The client is chosen as orb-worker chooses it: ``dry_run`` → ``DiodeDryRunClient`` (writes what
the SDK's dry-run client writes), client id and secret → ``DiodeClient`` (OAuth2 client
credentials; the target URL's scheme decides TLS: ``grpc://``/``http://`` plain,
``grpcs://``/``https://`` TLS), neither → ``DiodeOTLPClient`` (OTLP logs, orb-worker's fallback).
``producer_app_name`` is ``<app_name_prefix>/<app_name>`` of the backend; request metadata is
orb-worker's (``policy_name``, ``worker_backend``, ``run_id``).

Protobuf entities arrive already serialised and framed as an ``IngestRequest`` by the core; the
sink parses them back in C (``IngestRequest.FromString``) and hands them to the client's public
``ingest()``. Chunks are sized by the exact request the client builds (:meth:`protobuf_envelope`),
so no request exceeds the bound.

Failures map to headrace's ingest hierarchy: gRPC ``UNAVAILABLE``, ``DEADLINE_EXCEEDED`` and
``RESOURCE_EXHAUSTED`` → ``IngestUnavailable`` (retried with backoff through the outbox), errors in
the response → ``IngestRejected``, anything else → ``IngestError``.

``handle(item)`` delivers an outbox item written by ``OutboxSink`` (runner → outbox → worker →
Diode), so delivery survives restarts.
"""

from __future__ import annotations

import base64
import json
import threading
import uuid
from collections.abc import Iterable, Mapping
from typing import Any

from headrace.errors import ConfigError, IngestError, IngestRejected, IngestUnavailable

__all__ = ["REQUEST_METADATA_KEYS", "DiodeSink", "resolve_env_value"]

#: The run metadata keys sent as the request's metadata (orb-worker's).
REQUEST_METADATA_KEYS = ("policy_name", "worker_backend", "run_id")

_DEFAULT_STREAM = "latest"
_TRANSIENT = ("UNAVAILABLE", "DEADLINE_EXCEEDED", "RESOURCE_EXHAUSTED")


def resolve_env_value(value: str | None, what: str) -> str | None:
    """orb-worker's ``${VAR}`` wrapping of a command-line value: the whole value ``${NAME}`` is
    read from the environment. Stricter than orb-worker: an unset variable is a ``ConfigError``
    naming it (orb-worker would silently use the literal text)."""
    import os

    if value is None:
        return None
    if value.startswith("${") and value.endswith("}"):
        name = value[2:-1]
        resolved = os.environ.get(name)
        if resolved is None:
            raise ConfigError(f"{what}: environment variable {name!r} (from {value!r}) is not set")
        return resolved
    return value


def _status_name(exc: BaseException) -> str | None:
    code = getattr(exc, "status_code", None)
    if code is None:
        getter = getattr(exc, "code", None)
        if callable(getter):
            try:
                code = getter()
            except Exception:
                code = None
    return getattr(code, "name", None) if code is not None else None


class DiodeSink:
    """Sends chunks to Diode with the SDK's client (see the module documentation)."""

    def __init__(
        self,
        target: str | None = None,
        client_id: str | None = None,
        client_secret: str | None = None,
        *,
        app_name_prefix: str | None = None,
        dry_run: bool = False,
        dry_run_output_dir: str | None = None,
    ) -> None:
        target = resolve_env_value(target, "target")
        client_id = resolve_env_value(client_id, "client_id")
        client_secret = resolve_env_value(client_secret, "client_secret")
        if not dry_run and not target:
            raise ConfigError("DiodeSink needs a target (grpc://host:port, grpcs://…) unless dry_run=True")
        if (client_id is None) != (client_secret is None):
            raise ConfigError("DiodeSink: give both client_id and client_secret, or neither (OTLP)")
        self.target = target
        self.client_id = client_id
        self._client_secret = client_secret
        self.app_name_prefix = app_name_prefix
        self.dry_run = dry_run
        self.dry_run_output_dir = resolve_env_value(dry_run_output_dir, "dry_run_output_dir")
        self._clients: dict[tuple[str, str], Any] = {}
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        mode = "dry-run" if self.dry_run else ("credentials" if self.client_id else "otlp")
        return f"DiodeSink(target={self.target!r}, mode={mode!r}, app_name_prefix={self.app_name_prefix!r})"

    @property
    def mode(self) -> str:
        """``"dry_run"``, ``"grpc"`` (client credentials) or ``"otlp"``."""
        return "dry_run" if self.dry_run else ("grpc" if self.client_id else "otlp")

    def producer_app_name(self, app_name: str) -> str:
        """``<prefix>/<app_name>``, or ``app_name`` without a prefix (orb-worker's rule)."""
        return f"{self.app_name_prefix}/{app_name}" if self.app_name_prefix else app_name

    def client(self, app_name: str, app_version: str) -> Any:
        """The SDK client for a backend (one per app name and version, created on first use)."""
        key = (app_name, app_version)
        with self._lock:
            client = self._clients.get(key)
            if client is None:
                client = self._new_client(self.producer_app_name(app_name), app_version)
                self._clients[key] = client
            return client

    def _new_client(self, app_name: str, app_version: str) -> Any:
        from netboxlabs.diode.sdk.client import DiodeClient, DiodeDryRunClient, DiodeOTLPClient

        if self.dry_run:
            return DiodeDryRunClient(app_name=app_name, output_dir=self.dry_run_output_dir)
        assert self.target is not None
        try:
            if self.client_id is not None:
                return DiodeClient(
                    target=self.target,
                    app_name=app_name,
                    app_version=app_version,
                    client_id=self.client_id,
                    client_secret=self._client_secret,
                )
            return DiodeOTLPClient(target=self.target, app_name=app_name, app_version=app_version)
        except Exception as exc:
            raise IngestUnavailable(f"cannot connect to Diode at {self.target}: {exc}") from exc

    def close(self) -> None:
        """Closes every client's channel."""
        with self._lock:
            clients, self._clients = list(self._clients.values()), {}
        for client in clients:
            close = getattr(client, "close", None)
            if callable(close):
                close()

    @staticmethod
    def request_metadata(metadata: Mapping[str, Any]) -> dict[str, Any]:
        """The request metadata sent with a chunk: orb-worker's keys, taken from the run's."""
        return {key: metadata[key] for key in REQUEST_METADATA_KEYS if key in metadata}

    def _client_for(self, metadata: Mapping[str, Any]) -> Any:
        app_name = str(metadata.get("app_name") or metadata.get("worker_backend") or "headrace")
        app_version = str(metadata.get("app_version") or "0.0.0")
        return self.client(app_name, app_version)

    # -- the sink protocol the runner calls -------------------------------------------------------

    def protobuf_envelope(self, metadata: Mapping[str, Any]) -> int:
        """Bytes of the request this sink's client builds around the entities of a run with
        ``metadata``: stream, a request id, SDK and producer names and versions, and the request
        metadata (exact for the gRPC and dry-run clients)."""
        from netboxlabs.diode.sdk.diode.v1 import ingester_pb2
        from netboxlabs.diode.sdk.ingester import convert_dict_to_struct

        client = self._client_for(metadata)
        request = ingester_pb2.IngestRequest(
            stream=_DEFAULT_STREAM,
            id=str(uuid.uuid4()),
            producer_app_name=client.app_name,
            sdk_name=client.name,
            sdk_version=client.version,
        )
        if not self.dry_run:
            request.producer_app_version = str(getattr(client, "app_version", "") or "")
        request.metadata.CopyFrom(convert_dict_to_struct(self.request_metadata(metadata)))
        return int(request.ByteSize())

    def ingest_protobuf(self, entities: bytes, *, metadata: Mapping[str, Any]) -> None:
        """Sends one chunk of serialised entities (an ``IngestRequest`` holding only them)."""
        from netboxlabs.diode.sdk.diode.v1 import ingester_pb2

        request = ingester_pb2.IngestRequest.FromString(entities)
        self._send(request.entities, metadata)

    def ingest(self, entities: Iterable[Any], *, metadata: Mapping[str, Any]) -> None:
        """Sends one chunk of entities given as protobuf ``Entity`` messages or as dicts in
        Diode's JSON form."""
        from google.protobuf.json_format import ParseDict, ParseError  # type: ignore[import-untyped,unused-ignore]
        from netboxlabs.diode.sdk.diode.v1 import ingester_pb2

        messages = []
        for position, entity in enumerate(entities):
            if isinstance(entity, ingester_pb2.Entity):
                messages.append(entity)
                continue
            try:
                messages.append(ParseDict(entity, ingester_pb2.Entity(), ignore_unknown_fields=False))
            except (ParseError, TypeError, AttributeError) as exc:
                raise IngestRejected(f"entity {position} of the chunk is not a Diode Entity: {exc}") from exc
        self._send(messages, metadata)

    def record_failure(self, error: BaseException, *, metadata: Mapping[str, Any]) -> None:
        """Nothing is sent to Diode for a failed run (as orb-worker)."""

    def _send(self, entities: Any, metadata: Mapping[str, Any]) -> None:
        client = self._client_for(metadata)
        try:
            response = client.ingest(entities=entities, metadata=self.request_metadata(metadata))
        except IngestError:
            raise
        except Exception as exc:
            status = _status_name(exc)
            if status in _TRANSIENT:
                raise IngestUnavailable(f"Diode at {self.target} is unavailable ({status}): {exc}") from exc
            if status is None and not hasattr(exc, "status_code") and not hasattr(exc, "code"):
                raise IngestError(f"ingest to Diode failed: {type(exc).__name__}: {exc}") from exc
            raise IngestError(f"Ingest transport error ({status}): {exc}") from exc
        errors = list(getattr(response, "errors", []) or [])
        if errors:
            raise IngestRejected(f"Diode rejected the chunk: {errors}")

    # -- the outbox handler -----------------------------------------------------------------------

    def handle(self, item: Any) -> None:
        """Delivers an outbox item written by ``OutboxSink`` (``{"metadata", "entities"}`` or
        ``{"metadata", "entities_protobuf"}``); use it as the handler of the sink's topic."""
        payload = item.payload if hasattr(item, "payload") else item
        if isinstance(payload, (str, bytes)):
            payload = json.loads(payload)
        if not isinstance(payload, Mapping) or "metadata" not in payload:
            raise IngestRejected("the outbox item is not a headrace chunk ({'metadata', 'entities'…})")
        metadata = payload["metadata"]
        if "entities_protobuf" in payload:
            self.ingest_protobuf(base64.b64decode(payload["entities_protobuf"]), metadata=metadata)
        else:
            self.ingest(payload.get("entities", []), metadata=metadata)
