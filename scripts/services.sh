#!/usr/bin/env bash
# Make sure Redis (the job queue) answers on REDIS_URL's default address; start a local one if it does not.
set -euo pipefail
if .venv/bin/python -c "import redis, sys; redis.Redis(socket_connect_timeout=1).ping()" 2>/dev/null; then
    exit 0
fi
if ! command -v redis-server >/dev/null; then
    echo "Redis is not running on 127.0.0.1:6379 and redis-server is not installed (apt-get install redis-server)" >&2
    exit 1
fi
echo "==> starting redis-server on 127.0.0.1:6379"
redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save "" --appendonly no
for _ in $(seq 20); do
    .venv/bin/python -c "import redis; redis.Redis(socket_connect_timeout=1).ping()" 2>/dev/null && exit 0
    sleep 0.5
done
echo "redis-server did not come up" >&2
exit 1
