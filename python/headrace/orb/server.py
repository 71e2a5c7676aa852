"""orb-worker's HTTP API on headrace, with its exact status codes and JSON bodies.

Routes: ``POST /api/v1/policies`` (``application/x-yaml`` only), ``DELETE
/api/v1/policies/{name}``, ``GET /api/v1/status``, ``GET /api/v1/capabilities``. Errors are
``{"detail": …}`` as FastAPI writes them (orb-worker's stack), unknown routes 404 ``Not Found``
and wrong methods 405 ``Method Not Allowed``.

The server is the standard library's threading HTTP server: four small routes need no framework,
no event loop and no extra dependency, and each request runs on its own thread, so a slow
backend load never blocks ``/status``. Pass port 0 to bind a free port; :attr:`OrbHttpServer.port`
tells which one.
"""

from __future__ import annotations

import json
import logging
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import unquote

import yaml
from pydantic import ValidationError

from headrace.orb.policies import PolicyDocumentError, parse_policy_request, validation_errors
from headrace.orb.service import OrbWorker, PolicyExistsError, PolicyNotFoundError

__all__ = ["YAML_CONTENT_TYPE", "OrbHttpServer", "handle_request"]

logger = logging.getLogger("headrace.orb.server")

#: The only content type ``POST /api/v1/policies`` accepts (as orb-worker).
YAML_CONTENT_TYPE = "application/x-yaml"
_POLICIES = "/api/v1/policies"
_ROUTES = {"/api/v1/status": {"GET"}, "/api/v1/capabilities": {"GET"}, _POLICIES: {"POST"}}


def _version() -> str:
    from headrace import __version__

    return str(__version__)


def _post_policies(worker: OrbWorker, content_type: str | None, body: bytes) -> tuple[int, Any]:
    if content_type != YAML_CONTENT_TYPE:
        return 400, {"detail": "invalid Content-Type. Only 'application/x-yaml' is supported"}
    try:
        written = yaml.safe_load(body)
    except yaml.YAMLError:
        return 400, {"detail": "Invalid YAML format"}
    try:
        request = parse_policy_request(written if isinstance(written, dict) else body)
    except PolicyDocumentError as exc:
        if isinstance(exc.__cause__, yaml.YAMLError):
            return 400, {"detail": "Invalid YAML format"}
        return 400, {"detail": str(exc)}
    except ValidationError as exc:
        return 403, {"detail": validation_errors(exc)}
    except Exception as exc:
        return 400, {"detail": str(exc)}
    written_policies = written.get("policies", {}) if isinstance(written, dict) else {}
    started: list[str] = []
    for name, policy in request.policies.items():
        try:
            worker.start_policy(name, policy, written_policies.get(name))
            started.append(name)
        except PolicyExistsError as exc:
            return 409, {"detail": str(exc)}
        except Exception as exc:
            for done in started:
                try:
                    worker.delete_policy(done)
                except Exception:
                    logger.exception("rolling back policy %r failed", done)
            return 400, {"detail": str(exc)}
    if not started:
        return 400, {"detail": "no policies found in request"}
    if len(started) == 1:
        return 201, {"detail": f"policy '{started[0]}' was started"}
    return 201, {"detail": f"policies {started} were started"}


def handle_request(worker: OrbWorker, method: str, path: str, content_type: str | None, body: bytes) -> tuple[int, Any]:
    """The status and JSON body orb-worker answers ``method path`` with."""
    path = path.split("?", 1)[0]
    if path.startswith(_POLICIES + "/") and path.count("/") == 4:
        if method != "DELETE":
            return 405, {"detail": "Method Not Allowed"}
        name = unquote(path[len(_POLICIES) + 1 :])
        try:
            worker.delete_policy(name)
        except PolicyNotFoundError as exc:
            return 404, {"detail": str(exc)}
        except Exception as exc:
            return 400, {"detail": str(exc)}
        return 200, {"detail": f"policy '{name}' was deleted"}
    methods = _ROUTES.get(path)
    if methods is None:
        return 404, {"detail": "Not Found"}
    if method not in methods:
        return 405, {"detail": "Method Not Allowed"}
    if path == "/api/v1/status":
        return 200, {"version": _version(), "up_time_seconds": worker.uptime_seconds()}
    if path == "/api/v1/capabilities":
        return 200, {"loaded_modules": sorted(worker.loaded_modules)}
    return _post_policies(worker, content_type, body)


class _Handler(BaseHTTPRequestHandler):
    server: OrbHttpServer
    protocol_version = "HTTP/1.1"

    def _serve(self, method: str) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length > 0 else b""
        try:
            status, payload = handle_request(
                self.server.worker, method, self.path, self.headers.get("Content-Type"), body
            )
        except Exception as exc:  # never an HTML error page
            logger.exception("%s %s failed", method, self.path)
            status, payload = 500, {"detail": f"internal error: {exc}"}
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:
        self._serve("GET")

    def do_POST(self) -> None:
        self._serve("POST")

    def do_DELETE(self) -> None:
        self._serve("DELETE")

    def do_PUT(self) -> None:
        self._serve("PUT")

    def do_PATCH(self) -> None:
        self._serve("PATCH")

    def log_message(self, format: str, *args: Any) -> None:
        logger.debug("%s - %s", self.address_string(), format % args)


class OrbHttpServer(ThreadingHTTPServer):
    """Serves orb-worker's API for ``worker`` on ``host:port`` (port 0: any free port)."""

    daemon_threads = True

    def __init__(self, worker: OrbWorker, host: str = "0.0.0.0", port: int = 8071) -> None:
        self.worker = worker
        super().__init__((host, port), _Handler)

    @property
    def port(self) -> int:
        """The port actually bound."""
        return int(self.server_address[1])

    def serve_in_thread(self) -> threading.Thread:
        """Serves on a daemon thread (tests, embedding); stop with ``shutdown()``."""
        thread = threading.Thread(target=self.serve_forever, name="headrace-orb-http", daemon=True)
        thread.start()
        return thread
