"""Helpers shared by the benchmark scripts."""

from __future__ import annotations

import atexit
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import redis

from lensguard.launcher import free_port, stop
from settings import Settings


class LocalServer(ThreadingHTTPServer):
    request_queue_size = 128  # the default backlog of 5 drops concurrent connections (1 s SYN retries)


Respond = Callable[[BaseHTTPRequestHandler], tuple[int, bytes | None]]


def start_server(respond: Respond) -> LocalServer:
    """A loopback HTTP server in a thread answering GET with `respond(request)` -> (status, JPEG body or None)."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):
            status, body = respond(self)
            self.send_response(status)
            if body is not None:
                self.send_header("Content-Type", "image/jpeg")
                self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if body is not None:
                self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = LocalServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def serve_bytes(files: dict[str, bytes], token: str) -> tuple[str, Callable[[], None]]:
    """Serve `files` by path over local HTTP, like Label Studio's /data/upload (token required)."""

    def respond(request: BaseHTTPRequestHandler) -> tuple[int, bytes | None]:
        body = files.get(request.path)
        if request.headers.get("Authorization") != f"Token {token}" or body is None:
            return (401 if body is not None else 404), None
        return 200, body

    server = start_server(respond)

    def shutdown() -> None:
        server.shutdown()
        server.server_close()

    return f"http://127.0.0.1:{server.server_address[1]}", shutdown


def distinct_frame(frames: Sequence[bytes], index: int) -> bytes:
    """Frame `index` of a repeating set plus 4 trailing bytes: its own file (and content hash), the same picture."""
    return frames[index % len(frames)] + index.to_bytes(4, "big")


def numbered_image_server(frame: Callable[[int], bytes]) -> tuple[str, LocalServer]:
    """Serve `/<index>.jpg` -> `frame(index)`; returns (host:port, server)."""
    server = start_server(lambda request: (200, frame(int(request.path.strip("/").split(".")[0]))))
    return f"127.0.0.1:{server.server_address[1]}", server


def timed(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def random_clip_env(
    label_studio_url: str, token: str, model: str, data_dir: str | Path, redis_url: str, image_host: str | None = None
) -> dict[str, str]:
    """The environment of a benchmark's backend and workers: a CLIP of random weights on the CPU reading Label
    Studio with `token`, and, where given, the benchmark's loopback image server let through the SSRF guard."""
    env = {
        "LENSGUARD_LABEL_STUDIO_URL": label_studio_url,
        "LENSGUARD_LABEL_STUDIO_API_KEY": token,
        "LENSGUARD_CLIP_MODEL": model,
        "LENSGUARD_CLIP_PRETRAINED": "none",
        "LENSGUARD_ALLOW_RANDOM_WEIGHTS": "true",
        "LENSGUARD_DEVICE": "cpu",
        "LENSGUARD_DATA_DIR": str(data_dir),
        "LENSGUARD_REDIS_URL": redis_url,
    }
    if image_host:
        env["LENSGUARD_ALLOWED_IMAGE_HOSTS"] = image_host
        env["LENSGUARD_ALLOWED_IMAGE_NETWORKS"] = "127.0.0.1/32"
    return env


def settings_of(env: dict[str, str]) -> Settings:
    """The settings that processes started with `env` read (its `LENSGUARD_*` variables, no .env file)."""
    ours = {k.removeprefix("LENSGUARD_").lower(): v for k, v in env.items() if k.startswith("LENSGUARD_")}
    return Settings(_env_file=None, **ours)


def benchmark_redis(url: str | None) -> str:
    """The Redis a benchmark queues on, emptied first: `url` (a database it may flush), else a private
    redis-server on a free port, stopped when the script exits, so a benchmark never flushes a database that the
    tests or another benchmark are using."""
    if url is None:
        if shutil.which("redis-server") is None:
            raise SystemExit("redis-server is not installed: pass --redis URL (a database this script may flush)")
        port = free_port()
        command = ["redis-server", "--bind", "127.0.0.1", "--port", str(port), "--save", "", "--appendonly", "no"]
        process = subprocess.Popen(command, stdout=subprocess.DEVNULL, start_new_session=True)
        atexit.register(stop, process)
        if signal.getsignal(signal.SIGTERM) is signal.SIG_DFL:  # `timeout` and `kill`: clean up as on Ctrl-C
            signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
        url = f"redis://127.0.0.1:{port}/0"
        deadline = time.monotonic() + 30
        while True:
            try:
                redis.Redis.from_url(url).ping()
                break
            except redis.ConnectionError:
                if time.monotonic() > deadline or process.poll() is not None:
                    raise SystemExit(f"redis-server on port {port} did not start") from None
                time.sleep(0.1)
    redis.Redis.from_url(url).flushdb()
    return url
