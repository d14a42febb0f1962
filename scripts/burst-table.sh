#!/usr/bin/env bash
# The table of issue #14, item 3: hits against offered load on the Redis path,
# for one gateway binary, beside a private redis-server (scripts/with-redis.sh).
#   scripts/burst-table.sh [path/to/cache-gateway]   (default: the release build)
# Gateway, Redis and the load generator are pinned to CPUs as BENCH_* say
# (default: everything on CPU 1, as scripts/bench.sh does).
set -euo pipefail
cd "$(dirname "$0")/.."
binary=${1:-.build/release/cache-gateway}
cpu=${BENCH_CPU:-1}
exec scripts/with-redis.sh bash -c '
    set -euo pipefail
    dir=$(mktemp -d)
    trap "kill \$gateway 2>/dev/null || true; wait \$gateway 2>/dev/null || true; rm -rf \$dir" EXIT
    taskset -c '"$cpu"' "'"$binary"'" serve --socket "$dir/g.sock" --redis "unix://$CACHE_GATEWAY_TEST_REDIS_SOCKET" \
        --namespace "burst$RANDOM" >"$dir/log" 2>&1 &
    gateway=$!
    for _ in $(seq 1 200); do [ -S "$dir/g.sock" ] && break; sleep 0.05; done
    taskset -pc '"$cpu"' "$CACHE_GATEWAY_TEST_REDIS_PID" >/dev/null
    for depth in 1 16 256 4096 20000; do
        taskset -c '"$cpu"' python3 scripts/burst.py "$dir/g.sock" "$depth" 1
    done
    for depth in 1 16 256; do
        taskset -c '"$cpu"' python3 scripts/burst.py "$dir/g.sock" "$depth" 50 2000
    done
'
