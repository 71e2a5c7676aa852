"""An in-process Diode stand-in for tests: a grpcio server implementing the SDK's own
``diode.v1.IngesterService`` that records every request, behind one TCP port that also answers
the SDK's OAuth2 token request (``POST /auth/token``), so the real ``DiodeClient`` talks to it
unchanged (its auth URL and gRPC target share host and port).
"""

from __future__ import annotations

import json
import socket
import threading
from concurrent import futures
from dataclasses import dataclass, field
from typing import Any

import grpc
from netboxlabs.diode.sdk.diode.v1 import ingester_pb2, ingester_pb2_grpc

HTTP2_PREFACE = b"PRI * HTTP/2.0"


@dataclass
class Recorded:
    """One request as received: its wire bytes and the parsed message."""

    raw: bytes
    request: Any
    metadata: dict[str, str] = field(default_factory=dict)


class _Ingester(ingester_pb2_grpc.IngesterServiceServicer):
    def __init__(self, server: RecordingDiode) -> None:
        self.server = server

    def Ingest(self, request: Any, context: Any) -> Any:
        raw = request.SerializeToString()
        with self.server.lock:
            self.server.requests.append(Recorded(raw, request, dict(context.invocation_metadata())))
            behaviour = self.server.fail_next.pop(0) if self.server.fail_next else None
        if behaviour == "unavailable":
            context.abort(grpc.StatusCode.UNAVAILABLE, "diode is restarting")
        if behaviour == "unauthenticated":
            context.abort(grpc.StatusCode.UNAUTHENTICATED, "the token expired")
        if behaviour == "reject":
            return ingester_pb2.IngestResponse(errors=["entity rejected by the test server"])
        return ingester_pb2.IngestResponse()


class RecordingDiode:
    """``RecordingDiode().start()``; ``target`` is ``grpc://127.0.0.1:<port>``."""

    def __init__(self) -> None:
        self.requests: list[Recorded] = []
        self.fail_next: list[str] = []
        self.token_requests = 0
        self.lock = threading.Lock()
        self._grpc = grpc.server(
            futures.ThreadPoolExecutor(max_workers=4),
            options=[("grpc.max_receive_message_length", 64 * 1024 * 1024)],
        )
        ingester_pb2_grpc.add_IngesterServiceServicer_to_server(_Ingester(self), self._grpc)
        self._grpc_port = self._grpc.add_insecure_port("127.0.0.1:0")
        self._listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._listener.bind(("127.0.0.1", 0))
        self._listener.listen(64)
        self.port = self._listener.getsockname()[1]
        self._stopped = threading.Event()

    @property
    def target(self) -> str:
        return f"grpc://127.0.0.1:{self.port}"

    def start(self) -> RecordingDiode:
        self._grpc.start()
        threading.Thread(target=self._accept, daemon=True).start()
        return self

    def stop(self) -> None:
        self._stopped.set()
        self._listener.close()
        self._grpc.stop(0)

    def __enter__(self) -> RecordingDiode:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def entities(self) -> list[Any]:
        with self.lock:
            return [entity for r in self.requests for entity in r.request.entities]

    def _accept(self) -> None:
        while not self._stopped.is_set():
            try:
                conn, _ = self._listener.accept()
            except OSError:
                return
            threading.Thread(target=self._route, args=(conn,), daemon=True).start()

    def _route(self, conn: socket.socket) -> None:
        first = b""
        while len(first) < len(HTTP2_PREFACE):
            chunk = conn.recv(len(HTTP2_PREFACE) - len(first))
            if not chunk:
                conn.close()
                return
            first += chunk
        if first == HTTP2_PREFACE:
            self._proxy(conn, first)
        else:
            self._answer_token(conn, first)

    def _answer_token(self, conn: socket.socket, head: bytes) -> None:
        data = head
        while b"\r\n\r\n" not in data:
            chunk = conn.recv(4096)
            if not chunk:
                break
            data += chunk
        header, _, body = data.partition(b"\r\n\r\n")
        length = 0
        for line in header.split(b"\r\n"):
            if line.lower().startswith(b"content-length:"):
                length = int(line.split(b":", 1)[1])
        while len(body) < length:
            body += conn.recv(4096)
        with self.lock:
            self.token_requests += 1
        payload = json.dumps({"access_token": "test-token", "token_type": "Bearer", "expires_in": 3600}).encode()
        conn.sendall(
            b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nConnection: close\r\n"
            + f"Content-Length: {len(payload)}\r\n\r\n".encode()
            + payload
        )
        conn.close()

    def _proxy(self, client: socket.socket, head: bytes) -> None:
        upstream = socket.create_connection(("127.0.0.1", self._grpc_port))
        upstream.sendall(head)

        def pipe(src: socket.socket, dst: socket.socket) -> None:
            try:
                while True:
                    chunk = src.recv(65536)
                    if not chunk:
                        break
                    dst.sendall(chunk)
            except OSError:
                pass
            finally:
                for s in (src, dst):
                    try:
                        s.shutdown(socket.SHUT_RDWR)
                    except OSError:
                        pass

        threading.Thread(target=pipe, args=(upstream, client), daemon=True).start()
        pipe(client, upstream)
