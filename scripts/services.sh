#!/usr/bin/env bash
# Make sure the services lensguard needs answer locally, starting (or, with --for-tests, installing) them:
#   Redis on REDIS_URL's default address (always);
#   with --for-tests: PostgreSQL on 127.0.0.1:5432 (the end-to-end tests run Label Studio on it) and Chromium
#   (the browser test), from Debian packages when missing.
set -euo pipefail
cd "$(dirname "$0")/.."
FOR_TESTS=false
[ "${1:-}" = "--for-tests" ] && FOR_TESTS=true

as_root() {
    if [ "$(id -u)" = 0 ]; then "$@"; elif command -v sudo >/dev/null; then sudo "$@"; else
        echo "need root to run: $*" >&2
        return 1
    fi
}

apt_install() {
    echo "==> installing Debian packages: $*"
    export DEBIAN_FRONTEND=noninteractive
    as_root apt-get install -y -q "$@" >/dev/null || { as_root apt-get update -q >/dev/null && as_root apt-get install -y -q "$@" >/dev/null; }
}

ensure_redis() {
    if .venv/bin/python -c "import redis, sys; redis.Redis(socket_connect_timeout=1).ping()" 2>/dev/null; then
        return 0
    fi
    if ! command -v redis-server >/dev/null; then
        echo "Redis is not running on 127.0.0.1:6379 and redis-server is not installed (apt-get install redis-server)" >&2
        exit 1
    fi
    echo "==> starting redis-server on 127.0.0.1:6379"
    redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save "" --appendonly no
    for _ in $(seq 20); do
        .venv/bin/python -c "import redis; redis.Redis(socket_connect_timeout=1).ping()" 2>/dev/null && return 0
        sleep 0.5
    done
    echo "redis-server did not come up" >&2
    exit 1
}

postgres_answers() {
    .venv/bin/python -c "import psycopg; psycopg.connect('postgresql://postgres@127.0.0.1:5432/postgres', connect_timeout=2).close()" 2>/dev/null
}

ensure_postgres() {
    postgres_answers && return 0
    local installed=false
    if ! command -v pg_lsclusters >/dev/null || [ -z "$(pg_lsclusters -h 2>/dev/null)" ]; then
        apt_install postgresql
        installed=true
    fi
    read -r version cluster _ < <(pg_lsclusters -h | head -1)
    if $installed; then
        # A cluster made here for the tests: the postgres role may connect over loopback without a password.
        hba="/etc/postgresql/$version/$cluster/pg_hba.conf"
        as_root sed -i '1i host all postgres 127.0.0.1/32 trust' "$hba"
    fi
    echo "==> starting PostgreSQL $version/$cluster"
    as_root pg_ctlcluster "$version" "$cluster" start 2>/dev/null || as_root pg_ctlcluster "$version" "$cluster" reload
    for _ in $(seq 30); do
        postgres_answers && return 0
        sleep 1
    done
    echo "PostgreSQL does not accept user postgres on 127.0.0.1:5432 without a password (see pg_hba.conf)" >&2
    exit 1
}

ensure_chromium() {
    [ -x /usr/bin/chromium ] && return 0
    apt_install chromium
}

ensure_redis
if $FOR_TESTS; then
    ensure_postgres
    ensure_chromium
fi
