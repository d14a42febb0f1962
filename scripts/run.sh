#!/usr/bin/env bash
# `make run`: the main job. Starts a gateway on the embedded in-memory store
# (no Redis needed) on a private socket, runs the demo worker (a slow @Cached
# function: the first call is slow, later calls are hits; then a changed version
# of the function computes its own results), shows the gateway's counters, and
# stops it with SIGTERM as systemd would.
set -euo pipefail
cd "$(dirname "$0")/.."

swift build --disable-experimental-prebuilts --product cache-gateway
swift build --disable-experimental-prebuilts --product DemoWorker
bindir="$(swift build --disable-experimental-prebuilts --show-bin-path)"
bin="$bindir/cache-gateway"

dir=$(mktemp -d "${TMPDIR:-/tmp}/cache-gateway-run.XXXXXX")
socket="$dir/gateway.sock"
gateway_pid=""
cleanup() {
    if [ -n "$gateway_pid" ] && kill -0 "$gateway_pid" 2>/dev/null; then kill "$gateway_pid" 2>/dev/null || true; fi
    rm -rf "$dir"
}
trap cleanup EXIT

echo "== starting cache-gateway on $socket (embedded in-memory store)"
"$bin" serve --socket "$socket" &
gateway_pid=$!

# Wait until it answers, not for a fixed time.
for _ in $(seq 1 200); do
    "$bin" ping --socket "$socket" --timeout 200 >/dev/null 2>&1 && break
    kill -0 "$gateway_pid" 2>/dev/null || { echo "the gateway exited" >&2; exit 1; }
    sleep 0.05
done

echo "== cache-gateway ping"
"$bin" ping --socket "$socket"
echo "== the demo worker"
"$bindir/DemoWorker" demo --socket "$socket"
echo "== cache-gateway stats"
"$bin" stats --socket "$socket"

echo "== stopping it (SIGTERM)"
kill -TERM "$gateway_pid"
status=0
wait "$gateway_pid" || status=$?
gateway_pid=""
echo "cache-gateway exited with status $status; socket file removed: $([ -e "$socket" ] && echo no || echo yes)"
exit "$status"
