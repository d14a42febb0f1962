#!/usr/bin/env bash
# The Python client's benchmark (clients/python/bench/bench_hit.py): a Python
# @cache hit through the gateway against a redis-py GET of the same entry, on
# one private redis-server, everything pinned to one CPU (BENCH_CPU, default 1).
#   scripts/bench-python.sh [--rounds N] [--calls N]
# The gateway is CACHE_GATEWAY_BINARY, else the release build of scripts/bench.sh
# (.build-release, built here if missing). redis-py is installed only in the
# benchmark's own environment, .build/python-bench-venv, never in the package.
set -euo pipefail
cd "$(dirname "$0")/.."

cpu="${BENCH_CPU:-1}"
if [ -z "${CACHE_GATEWAY_BINARY:-}" ]; then
    flags=(--disable-experimental-prebuilts -c release --scratch-path .build-release)
    CACHE_GATEWAY_BINARY="$(swift build "${flags[@]}" --show-bin-path)/cache-gateway"
    [ -x "$CACHE_GATEWAY_BINARY" ] || swift build "${flags[@]}" --product cache-gateway
fi
export CACHE_GATEWAY_BINARY

venv=.build/python-bench-venv
if [ ! -x "$venv/bin/python" ]; then
    mkdir -p .build
    "${PYTHON:-python3}" -m venv "$venv" || /usr/bin/python3 -m venv "$venv"
    "$venv/bin/python" -m pip install -q msgpack redis
fi
"$venv/bin/python" -m pip install -q --force-reinstall --no-deps ./clients/python
export BENCH_PYTHON="$venv/bin/python"

echo "Python client benchmark on CPU $cpu: $(lscpu 2>/dev/null | sed -n 's/^Model name: *//p' | head -1), commit $(git rev-parse --short HEAD 2>/dev/null || echo unknown)"
# taskset pins redis-server, the gateway and the benchmark alike (children inherit it).
taskset -c "$cpu" scripts/with-redis.sh bash -c \
    '"$BENCH_PYTHON" clients/python/bench/bench_hit.py --gateway "$CACHE_GATEWAY_BINARY" --redis-socket "$CACHE_GATEWAY_TEST_REDIS_SOCKET" "$@"' \
    bench-python "$@"
