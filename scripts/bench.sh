#!/usr/bin/env bash
# `make bench`: builds the benchmarks in release mode and runs them pinned to
# one CPU (taskset), so that both sides of every comparison run the same way.
#   scripts/bench.sh [protocol]
set -euo pipefail
cd "$(dirname "$0")/.."

# A scratch path of its own, so that a release build never waits for (or
# invalidates) the debug build that the tests use.
flags=(--disable-experimental-prebuilts -c release --scratch-path .build-release)
swift build "${flags[@]}" --product GatewayBenchmarks
bin="$(swift build "${flags[@]}" --show-bin-path)/GatewayBenchmarks"

cpu=${BENCH_CPU:-1}
echo "GatewayBenchmarks pinned to CPU $cpu; $(nproc) CPUs online"
exec taskset -c "$cpu" "$bin" "$@"
