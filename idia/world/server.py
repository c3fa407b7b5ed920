"""A small static HTTP server bound to a loopback address: serves a folder, plus optional special routes.

Used by the synthetic world (images and query photos) and by the tests (which add routes for 404s, slow
responses, opt-out headers, redirects). Run it in-process (`LoopbackServer`) or as its own process:
`idia serve --root DIR --host 127.0.0.1 --port 0 --port-file F` (stop it by its PID).
"""

from __future__ import annotations

import ipaddress
import mimetypes
import os
import posixpath
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Callable
from urllib.parse import unquote, urlsplit

# A route gets the handler and returns nothing; it writes the whole response itself.
Route = Callable[[BaseHTTPRequestHandler], None]


def _require_loopback(host: str) -> None:
    try:
        ok = ipaddress.ip_address(host).is_loopback
    except ValueError:
        ok = host == "localhost"
    if not ok:
        raise ValueError(f"loopback_server binds loopback addresses only, not {host!r}")


class _Handler(BaseHTTPRequestHandler):
    server: "_Server"
    protocol_version = "HTTP/1.1"

    def log_message(self, fmt: str, *args) -> None:  # quiet; requests are counted instead
        pass

    def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
        path = urlsplit(self.path).path
        with self.server.lock:
            self.server.requests.append(path)
        route = self.server.routes.get(path)
        if route is not None:
            route(self)
            return
        rel = posixpath.normpath(unquote(path)).lstrip("/")
        if rel.startswith("..") or self.server.root is None:
            self.send_error(404)
            return
        file = (self.server.root / rel).resolve()
        if not str(file).startswith(str(self.server.root)) or not file.is_file():
            self.send_error(404)
            return
        body = file.read_bytes()
        self.send_response(200)
        self.send_header("Content-Type", mimetypes.guess_type(file.name)[0] or "application/octet-stream")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    root: Path | None
    routes: dict[str, Route]
    requests: list[str]
    lock: threading.Lock

    def handle_error(self, request, client_address) -> None:
        """A client that hung up mid-answer (a download stopped or bounded) is not an error worth a traceback."""
        import sys

        exc = sys.exc_info()[1]
        if isinstance(exc, (BrokenPipeError, ConnectionResetError, ConnectionAbortedError, TimeoutError)):
            return
        super().handle_error(request, client_address)


class LoopbackServer:
    """`with LoopbackServer(root) as srv: srv.url("a.jpg")` serves `root` on 127.0.0.1 in a thread."""

    def __init__(
        self,
        root: str | os.PathLike | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
        routes: dict[str, Route] | None = None,
    ):
        _require_loopback(host)
        self._httpd = _Server((host, port), _Handler)
        self._httpd.root = Path(root).resolve() if root is not None else None
        self._httpd.routes = dict(routes or {})
        self._httpd.requests = []
        self._httpd.lock = threading.Lock()
        self._thread: threading.Thread | None = None

    @property
    def host(self) -> str:
        return self._httpd.server_address[0]

    @property
    def port(self) -> int:
        return self._httpd.server_address[1]

    def serve_forever(self) -> None:
        """Serve in this thread until interrupted (the `idia serve` process)."""
        try:
            self._httpd.serve_forever()
        except KeyboardInterrupt:
            pass

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def url(self, path: str) -> str:
        return f"{self.base_url}/{path.lstrip('/')}"

    @property
    def requests(self) -> list[str]:
        with self._httpd.lock:
            return list(self._httpd.requests)

    def start(self) -> "LoopbackServer":
        self._thread = threading.Thread(target=self._httpd.serve_forever, name="loopback-server", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def __enter__(self) -> "LoopbackServer":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
