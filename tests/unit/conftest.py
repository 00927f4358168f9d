from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest


@dataclass
class FileServer:
    """A local HTTP server for image-fetching tests: serves bytes by path, checks one auth header; per path it can
    also redirect, answer slowly, send odd headers, or answer POSTs."""

    url: str
    files: dict[str, bytes] = field(default_factory=dict)
    required_auth: str | None = None
    seen_auth: list[str | None] = field(default_factory=list)
    seen_paths: list[str] = field(default_factory=list)
    seen_hosts: list[str | None] = field(default_factory=list)
    redirects: dict[str, str] = field(default_factory=dict)  # path -> Location (302)
    delays: dict[str, float] = field(default_factory=dict)  # path -> seconds before answering
    headers: dict[str, dict[str, str]] = field(default_factory=dict)  # path -> headers replacing the defaults
    posts: dict[str, tuple[int, bytes]] = field(default_factory=dict)  # path -> (status, body)


@pytest.fixture
def file_server() -> Iterator[FileServer]:
    state = FileServer(url="")

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):
            state.seen_auth.append(self.headers.get("Authorization"))
            state.seen_paths.append(self.path)
            state.seen_hosts.append(self.headers.get("Host"))
            time.sleep(state.delays.get(self.path, 0))
            if self.path in state.redirects:
                self.send_response(302)
                self.send_header("Location", state.redirects[self.path])
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            if state.required_auth and self.headers.get("Authorization") != state.required_auth:
                self.send_response(401)
                self.end_headers()
                return
            body = state.files.get(self.path)
            if body is None:
                self.send_response(404)
                self.end_headers()
                return
            self.send_response(200)
            headers = state.headers.get(self.path, {"Content-Type": "image/jpeg", "Content-Length": str(len(body))})
            for name, value in headers.items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(body)

        def do_POST(self):
            self.rfile.read(int(self.headers.get("Content-Length") or 0))
            status, body = state.posts.get(self.path, (404, b""))
            self.send_response(status)
            self.send_header("Content-Type", "text/html")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler, bind_and_activate=False)
    server.request_queue_size = 64  # the default backlog of 5 stalls concurrent fetches for a second
    server.daemon_threads = True
    server.server_bind()
    server.server_activate()
    state.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield state
    server.shutdown()
    server.server_close()
