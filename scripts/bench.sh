#!/usr/bin/env bash
# `make bench`: builds the benchmarks and the gateway in release mode and runs
# them beside a private redis-server (scripts/with-redis.sh). The benchmark
# pins itself, the gateway and redis-server with taskset: latency runs on one
# CPU (BENCH_CPU, default 1), throughput with servers and clients on different CPUs.
#   scripts/bench.sh [protocol] [gateway] [client] [metrics]
set -euo pipefail
cd "$(dirname "$0")/.."

# A scratch path of its own, so that a release build never waits for (or
# invalidates) the debug build that the tests use.
flags=(--disable-experimental-prebuilts -c release --scratch-path .build-release)
swift build "${flags[@]}" --product GatewayBenchmarks
swift build "${flags[@]}" --product cache-gateway
bin="$(swift build "${flags[@]}" --show-bin-path)"

echo "GatewayBenchmarks on $(nproc) CPUs; $(uname -r)"
exec scripts/with-redis.sh "$bin/GatewayBenchmarks" "$@"
