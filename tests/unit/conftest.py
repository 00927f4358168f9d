from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest


@dataclass
class FileServer:
    """A local HTTP server for image-fetching tests: serves bytes by path, checks one auth header."""

    url: str
    files: dict[str, bytes] = field(default_factory=dict)
    required_auth: str | None = None
    seen_auth: list[str | None] = field(default_factory=list)
    seen_paths: list[str] = field(default_factory=list)


@pytest.fixture
def file_server() -> Iterator[FileServer]:
    state = FileServer(url="")

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):
            state.seen_auth.append(self.headers.get("Authorization"))
            state.seen_paths.append(self.path)
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
            self.send_header("Content-Type", "image/jpeg")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler, bind_and_activate=False)
    server.request_queue_size = 64  # the default backlog of 5 stalls concurrent fetches for a second
    server.server_bind()
    server.server_activate()
    state.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield state
    server.shutdown()
    server.server_close()
