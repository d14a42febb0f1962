#!/usr/bin/env bash
# Runs a command beside a private redis-server, then stops the server whatever
# the command's outcome. The server listens only on a Unix socket in a fresh
# temporary directory (no TCP port), keeps nothing on disk, and is exported to
# the command as CACHE_GATEWAY_TEST_REDIS_SOCKET.
# Beside it, a Redis Cluster of 3 masters with one replica each
# (scripts/redis-cluster.sh) on free local ports: its seeds are exported as
# CACHE_GATEWAY_TEST_REDIS_CLUSTER_SEEDS (host:port,...), its directory (with
# each node's start-PORT.sh) as CACHE_GATEWAY_TEST_REDIS_CLUSTER_DIR.
# WITH_REDIS_CLUSTER=0 skips the cluster. The Sentinel and TLS topologies
# (scripts/redis-sentinel.sh, scripts/redis-tls.sh) run beside them too.
#   scripts/with-redis.sh swift test
set -euo pipefail

dir=$(mktemp -d "${TMPDIR:-/tmp}/cache-gateway-redis.XXXXXX")
socket="$dir/redis.sock"
redis_pid=""

cleanup() {
    if [ -d "$dir/cluster" ]; then "$(dirname "$0")/redis-cluster.sh" stop "$dir/cluster" || true; fi
    if [ -n "$redis_pid" ] && kill -0 "$redis_pid" 2>/dev/null; then
        kill "$redis_pid" 2>/dev/null || true
        wait "$redis_pid" 2>/dev/null || true
    fi
    rm -rf "$dir"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# WITH_REDIS_TCP_PORT (the benchmarks set it) also listens on 127.0.0.1:PORT.
port="${WITH_REDIS_TCP_PORT:-0}"
redis-server --port "$port" --bind 127.0.0.1 --unixsocket "$socket" --unixsocketperm 700 \
    --save "" --appendonly no --dir "$dir" --logfile "$dir/redis.log" --daemonize no &
redis_pid=$!

# Wait for the server to answer, not for a fixed time.
for _ in $(seq 1 200); do
    if [ "$(redis-cli -s "$socket" ping 2>/dev/null)" = "PONG" ]; then break; fi
    kill -0 "$redis_pid" 2>/dev/null || { echo "with-redis: redis-server exited:" >&2; cat "$dir/redis.log" >&2; exit 1; }
    sleep 0.05
done
[ "$(redis-cli -s "$socket" ping 2>/dev/null)" = "PONG" ] || { echo "with-redis: redis-server did not start" >&2; exit 1; }

export CACHE_GATEWAY_TEST_REDIS_SOCKET="$socket"
export CACHE_GATEWAY_TEST_REDIS_PID="$redis_pid"
if [ "$port" != 0 ]; then export CACHE_GATEWAY_TEST_REDIS_TCP_PORT="$port"; fi
if [ "${WITH_REDIS_CLUSTER:-1}" != 0 ]; then
    CACHE_GATEWAY_TEST_REDIS_CLUSTER_SEEDS=$("$(dirname "$0")/redis-cluster.sh" start "$dir/cluster")
    export CACHE_GATEWAY_TEST_REDIS_CLUSTER_SEEDS
    export CACHE_GATEWAY_TEST_REDIS_CLUSTER_DIR="$dir/cluster"
fi
set +e
# The Sentinel and TLS topologies, each started once for the whole run.
"$(dirname "$0")/redis-sentinel.sh" "$(dirname "$0")/redis-tls.sh" "$@"
status=$?
set -e
exit $status
