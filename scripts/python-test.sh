#!/usr/bin/env bash
# Runs the Python client's tests (clients/python/tests) against the tree's debug
# gateway, on the embedded store and on the redis-server of scripts/with-redis.sh:
#   scripts/with-redis.sh scripts/python-test.sh [pytest arguments]
# It fails, never skips, when the gateway binary or the Redis socket is missing.
set -euo pipefail
cd "$(dirname "$0")/.."

export CACHE_GATEWAY_BINARY="${CACHE_GATEWAY_BINARY:-$(pwd)/.build/debug/cache-gateway}"
if [ ! -x "$CACHE_GATEWAY_BINARY" ]; then
    echo "python-test: no gateway binary at $CACHE_GATEWAY_BINARY (build it first: swift build)" >&2
    exit 1
fi
python=$(scripts/python-venv.sh)
cd clients/python
exec "$python" -m pytest -p no:cacheprovider -q -rfEs "$@" tests
