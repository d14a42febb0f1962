#!/usr/bin/env bash
# `make bench`: builds the benchmarks and the gateway in release mode and runs
# them beside a private redis-server (scripts/with-redis.sh). The benchmark
# pins itself, the gateway and redis-server with taskset: latency runs on one
# CPU (BENCH_CPU, default 1), throughput with servers and clients on different CPUs.
#   scripts/bench.sh [protocol] [gateway] [staleness] [client] [purge] [tls] [metrics] [cluster]
# (cluster runs only when named: it needs the test Redis Cluster, which scripts/with-redis.sh then starts)
# It also writes the figures as JSON to BENCH_RESULTS (default
# .build/bench-results.json; the previous file, if any, is kept as
# *.previous.json), with the commit, the date and the machine, and then
# prints the ratios against that previous run (scripts/bench-compare.py).
set -euo pipefail
cd "$(dirname "$0")/.."

# A scratch path of its own, so that a release build never waits for (or
# invalidates) the debug build that the tests use.
flags=(--disable-experimental-prebuilts -c release --scratch-path .build-release)
swift build "${flags[@]}" --product GatewayBenchmarks
swift build "${flags[@]}" --product cache-gateway
bin="$(swift build "${flags[@]}" --show-bin-path)"

results="${BENCH_RESULTS:-.build/bench-results.json}"
previous="${results%.json}.previous.json"
mkdir -p "$(dirname "$results")"
if [ -f "$results" ]; then mv -f "$results" "$previous"; fi
commit="$(git rev-parse --short HEAD 2>/dev/null || echo unknown)"
if [ -n "$(git status --porcelain --untracked-files=no 2>/dev/null)" ]; then commit="$commit-dirty"; fi
cpu_model="$(lscpu 2>/dev/null | sed -n 's/^Model name: *//p' | head -1)"
export BENCH_RESULTS="$results"
export BENCH_COMMIT="$commit"
export BENCH_MACHINE="${BENCH_MACHINE:-${cpu_model:-unknown CPU}, $(nproc) CPUs, $(uname -sr)}"

# twemproxy, the gateway group's peer baseline (Debian's nutcracker).
if ! command -v nutcracker >/dev/null && [ ! -x /usr/sbin/nutcracker ]; then
    sudo=""; [ "$(id -u)" -ne 0 ] && sudo="sudo"
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends nutcracker >/dev/null
    # The package starts a system service; the benchmark runs its own.
    $sudo systemctl disable --now nutcracker >/dev/null 2>&1 || true
fi
# Redis also on TCP loopback, for the GET over TCP baseline: a port that was free a moment ago.
export WITH_REDIS_TCP_PORT="${WITH_REDIS_TCP_PORT:-$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')}"

# The test cluster only for the group that measures it.
if [[ " $* " != *" cluster "* ]]; then export WITH_REDIS_CLUSTER=0; fi
export REDIS_CLUSTER_NODE_TIMEOUT="${REDIS_CLUSTER_NODE_TIMEOUT:-10000}"

echo "GatewayBenchmarks on $BENCH_MACHINE; commit $BENCH_COMMIT"
scripts/with-redis.sh "$bin/GatewayBenchmarks" "$@"
if [ -f "$previous" ] && [ -f "$results" ] && command -v python3 >/dev/null; then
    echo "== Against the previous run ($previous) =="
    python3 scripts/bench-compare.py "$previous" "$results" || true
fi
