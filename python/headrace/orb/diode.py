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
        self._raw_calls: dict[int, Any] = {}
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
            self._raw_calls.clear()
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
        return int(self._envelope(self._client_for(metadata), metadata).ByteSize())

    def _envelope(self, client: Any, metadata: Mapping[str, Any]) -> Any:
        """The request the client builds around a chunk, without its entities."""
        from netboxlabs.diode.sdk.diode.v1 import ingester_pb2
        from netboxlabs.diode.sdk.ingester import convert_dict_to_struct

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
        return request

    def ingest_protobuf(self, entities: bytes, *, metadata: Mapping[str, Any]) -> None:
        """Sends one chunk of serialised entities (an ``IngestRequest`` holding only them).

        In dry-run mode the chunk is printed from its bytes by the core (:func:`_dry_run_text`):
        the same text the SDK's dry-run client writes, without building and walking the
        messages in Python."""
        from netboxlabs.diode.sdk.diode.v1 import ingester_pb2

        if self.dry_run:
            client = self._client_for(metadata)
            text = _dry_run_text(client, entities, self.request_metadata(metadata))
            if text is not None:
                _dry_run_write(client, text)
                return
        elif self._send_raw(entities, metadata):
            return
        request = ingester_pb2.IngestRequest.FromString(entities)
        self._send(request.entities, metadata)

    def _send_raw(self, entities: bytes, metadata: Mapping[str, Any]) -> bool:
        """Sends a chunk to Diode as bytes: the request's own fields serialised by protobuf,
        the entities as the core framed them (a parser reads the concatenation as one
        ``IngestRequest``), on the SDK client's channel with its credentials — no parsing
        and re-serialising of the entities. ``False`` when the client is not one whose
        channel this can use (the SDK's ``ingest()`` is used), or when the token needs
        renewing (the SDK's ``ingest()`` renews it and sends)."""
        import grpc  # type: ignore[import-untyped,unused-ignore]
        from netboxlabs.diode.sdk.client import DiodeClient
        from netboxlabs.diode.sdk.diode.v1 import ingester_pb2

        client = self._client_for(metadata)
        channel = getattr(client, "_channel", None)
        call_metadata = getattr(client, "_metadata", None)
        if not isinstance(client, DiodeClient) or channel is None or call_metadata is None:
            return False
        ingest = self._raw_calls.get(id(client))
        if ingest is None:
            ingest = channel.unary_unary(
                f"{getattr(client, 'path', None) or ''}/diode.v1.IngesterService/Ingest",
                request_serializer=None,
                response_deserializer=ingester_pb2.IngestResponse.FromString,
            )
            self._raw_calls[id(client)] = ingest
        envelope = self._envelope(client, metadata).SerializeToString()
        try:
            response = ingest(envelope + entities, metadata=call_metadata)
        except grpc.RpcError as exc:
            if _status_name(exc) == "UNAUTHENTICATED":
                return False
            status = _status_name(exc)
            if status in _TRANSIENT:
                raise IngestUnavailable(f"Diode at {self.target} is unavailable ({status}): {exc}") from exc
            raise IngestError(f"Ingest transport error ({status}): {exc}") from exc
        errors = list(getattr(response, "errors", []) or [])
        if errors:
            raise IngestRejected(f"Diode rejected the chunk: {errors}")
        return True

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


# -- the dry-run printer ------------------------------------------------------------------------

_SPECIAL = {
    "google.protobuf.Struct": "struct",
    "google.protobuf.Value": "value",
    "google.protobuf.ListValue": "list_value",
    "google.protobuf.Timestamp": "timestamp",
}
_printer: Any = None
_printer_lock = threading.Lock()


def _protojson_schema(root: Any) -> tuple[list[Any], list[Any], int]:
    """The core printer's schema of every message type reachable from the descriptor ``root``."""
    from google.protobuf.descriptor import FieldDescriptor as F  # type: ignore[import-untyped,unused-ignore]

    kinds = {
        F.TYPE_STRING: ("string", ""),
        F.TYPE_BYTES: ("bytes", ""),
        F.TYPE_BOOL: ("bool", ""),
        F.TYPE_DOUBLE: ("double", ""),
        F.TYPE_INT32: ("int32", "signed"),
        F.TYPE_SINT32: ("int32", "zigzag"),
        F.TYPE_SFIXED32: ("int32", "sfixed32"),
        F.TYPE_UINT32: ("int32", "unsigned"),
        F.TYPE_FIXED32: ("int32", "fixed32"),
        F.TYPE_INT64: ("int64", "signed"),
        F.TYPE_SINT64: ("int64", "zigzag"),
        F.TYPE_SFIXED64: ("int64", "sfixed64"),
        F.TYPE_UINT64: ("int64", "unsigned"),
        F.TYPE_FIXED64: ("int64", "fixed64"),
    }
    messages: list[Any] = []
    message_index: dict[str, int] = {}
    enums: list[Any] = []
    enum_index: dict[str, int] = {}
    pending: list[Any] = []

    def message_id(descriptor: Any) -> int:
        if descriptor.full_name not in message_index:
            message_index[descriptor.full_name] = len(messages)
            messages.append(None)
            pending.append(descriptor)
        return message_index[descriptor.full_name]

    def enum_id(descriptor: Any) -> int:
        if descriptor.full_name not in enum_index:
            enum_index[descriptor.full_name] = len(enums)
            enums.append(
                (
                    descriptor.full_name == "google.protobuf.NullValue",
                    [(v.number, v.name) for v in descriptor.values],
                )
            )
        return enum_index[descriptor.full_name]

    root_id = message_id(root)
    while pending:
        descriptor = pending.pop()
        full_name = descriptor.full_name
        if full_name in _SPECIAL:
            special = _SPECIAL[full_name]
        elif full_name.startswith("google.protobuf.") or descriptor.file.name == "google/protobuf/wrappers.proto":
            special = "unsupported"
        else:
            special = ""
        rows = []
        for field in descriptor.fields:
            target, encoding = -1, ""
            if field.type in (F.TYPE_MESSAGE,):
                kind, target = "message", message_id(field.message_type)
            elif field.type == F.TYPE_ENUM:
                kind, target = "enum", enum_id(field.enum_type)
            elif field.type in kinds:
                kind, encoding = kinds[field.type]
            else:
                kind = "unsupported"
            is_map = field.message_type is not None and field.message_type.GetOptions().map_entry
            oneof = field.containing_oneof.index if field.containing_oneof is not None else -1
            rows.append(
                (field.number, field.name, kind, target, encoding, field.is_repeated, field.has_presence, oneof, is_map)
            )
        messages[message_index[full_name]] = (special, rows)
    return messages, enums, root_id


def _entity_printer() -> Any:
    global _printer
    with _printer_lock:
        if _printer is None:
            from netboxlabs.diode.sdk.diode.v1 import ingester_pb2

            from headrace._core import ProtoJson

            _printer = ProtoJson(*_protojson_schema(ingester_pb2.Entity.DESCRIPTOR))
        return _printer


def _dry_run_text(client: Any, entities: bytes, request_metadata: Mapping[str, Any]) -> str | None:
    """What ``DiodeDryRunClient.ingest`` prints for a chunk: the request's own fields through
    the SDK's printer, its entities through the core's (``None``: use the SDK for this chunk)."""
    from google.protobuf.json_format import MessageToDict  # type: ignore[import-untyped,unused-ignore]
    from netboxlabs.diode.sdk.diode.v1 import ingester_pb2
    from netboxlabs.diode.sdk.ingester import convert_dict_to_struct

    rendered = _entity_printer().entities_json(entities, 1)
    if rendered is None:
        return None
    request = ingester_pb2.IngestRequest(
        stream=_DEFAULT_STREAM,
        id=str(uuid.uuid4()),
        producer_app_name=client.app_name,
        sdk_name=client.name,
        sdk_version=client.version,
    )
    request.metadata.CopyFrom(convert_dict_to_struct(dict(request_metadata)))
    fields = MessageToDict(request, preserving_proto_field_name=True)
    # Field-number order, as the printer writes it: stream (1), entities (2), the rest.
    marker = f"headrace-entities-{uuid.uuid4().hex}"
    ordered: dict[str, Any] = {}
    if "stream" in fields:
        ordered["stream"] = fields.pop("stream")
    ordered["entities"] = marker
    ordered.update(fields)
    return json.dumps(ordered, indent=2).replace(json.dumps(marker), rendered, 1)


def _dry_run_write(client: Any, text: str) -> None:
    """Writes ``text`` where ``DiodeDryRunClient.ingest`` writes its output."""
    import sys
    import time
    from pathlib import Path

    output_dir = getattr(client, "output_dir", None)
    if not output_dir:
        print(text, file=sys.stdout)
        return
    path = Path(output_dir)
    path.mkdir(parents=True, exist_ok=True)
    filename = "".join(c if c.isalnum() or c in ("_", "-") else "_" for c in client.app_name)
    with (path / f"{filename}_{time.perf_counter_ns()}.json").open("w") as fh:
        fh.write(text)
