#!/usr/bin/env bash
# `make bench`: builds the benchmarks and the gateway in release mode and runs
# them beside a private redis-server (scripts/with-redis.sh). The benchmark
# pins itself, the gateway and redis-server with taskset: latency runs on one
# CPU (BENCH_CPU, default 1), throughput with servers and clients on different CPUs.
#   scripts/bench.sh [protocol] [gateway] [client] [purge] [metrics]
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

echo "GatewayBenchmarks on $BENCH_MACHINE; commit $BENCH_COMMIT"
scripts/with-redis.sh "$bin/GatewayBenchmarks" "$@"
if [ -f "$previous" ] && [ -f "$results" ] && command -v python3 >/dev/null; then
    echo "== Against the previous run ($previous) =="
    python3 scripts/bench-compare.py "$previous" "$results" || true
fi
