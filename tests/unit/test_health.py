"""`lensguard health`, the containers' health checks, against a real Redis and a real HTTP server."""

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from rq import Queue, Worker

from lensguard.health import backend_health, worker_health
from tests.services import redis_url
from training.queue import connect

REDIS_URL = redis_url(12)


@pytest.fixture
def redis_connection():
    connection = connect(REDIS_URL)
    connection.flushdb()
    yield connection
    connection.flushdb()


def test_a_worker_is_healthy_once_registered_from_its_own_host(redis_connection):
    assert worker_health(REDIS_URL, "host-a") == (False, "no worker of host host-a is registered in Redis")
    worker = Worker([Queue("lensguard-health", connection=redis_connection)], connection=redis_connection, name="w1")
    worker.register_birth()
    assert worker_health(REDIS_URL, worker.hostname) == (True, "registered: w1")
    assert worker_health(REDIS_URL, "another-host")[0] is False
    worker.register_death()
    assert worker_health(REDIS_URL, worker.hostname)[0] is False
    assert worker_health("redis://127.0.0.1:1/0")[0] is False, "Redis down: unhealthy, no traceback"


def test_the_backend_is_healthy_when_health_answers_200():
    status = {"code": 200}

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(status["code"] if self.path == "/health" else 404)
            self.end_headers()
            self.wfile.write(b'{"status": "UP"}')

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        port = server.server_address[1]
        assert backend_health(port) == (True, '{"status": "UP"}')
        status["code"] = 503
        assert backend_health(port)[0] is False
    finally:
        server.shutdown()
    assert backend_health(port)[0] is False, "nothing listening"
