"""A real S3 API server for tests: moto's server, in a process of its own, on a free port.

It serves one request at a time. moto checks a PUT's If-Match/If-None-Match and then stores the object in two
steps; one request at a time makes that pair atomic, as S3 and MinIO guarantee for conditional writes.
"""

from __future__ import annotations

import contextlib
import socket
import subprocess
import sys
import time
from collections.abc import Iterator

SERVER = """
import sys
from werkzeug.serving import make_server
from moto.moto_server.werkzeug_app import DomainDispatcherApplication, MotoRequestHandler, create_backend_app
app = DomainDispatcherApplication(create_backend_app)
make_server("127.0.0.1", int(sys.argv[1]), app, threaded=False, request_handler=MotoRequestHandler).serve_forever()
"""


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def storage_options(endpoint_url: str) -> dict:
    """What the registry needs to reach the test server (fsspec/s3fs storage options)."""
    return {
        "key": "testing",
        "secret": "testing",
        "endpoint_url": endpoint_url,
        "config_kwargs": {"s3": {"addressing_style": "path"}},
        "skip_instance_cache": True,
    }


@contextlib.contextmanager
def s3_server(timeout: float = 30.0) -> Iterator[str]:
    """Yields the server's endpoint URL; stops the server afterwards."""
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-c", SERVER, str(port)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        deadline = time.monotonic() + timeout
        while True:
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=1):
                break
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"moto server did not start on port {port} (exit code {process.poll()})")
            time.sleep(0.1)
        yield f"http://127.0.0.1:{port}"
    finally:
        process.terminate()
        process.wait(timeout=10)
