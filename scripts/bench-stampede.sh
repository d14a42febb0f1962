#!/usr/bin/env bash
# The cold-key stampede benchmark (scripts/bench-stampede.py): release builds
# of the gateway and StampedeWorker, beside a private redis-server, pinned
# with taskset to BENCH_CPU (default 0).
#   BENCH_CPU=1 RUNS=5 scripts/bench-stampede.sh          (cold key: leases with invalidations, with polling, single-flight off)
#   MODES="on off" ...                                      (a subset of the modes)
#   MODE=steady SECONDS_STEADY=60 scripts/bench-stampede.sh (50 callers, TTL 2 s, compute 200 ms)
set -euo pipefail
cd "$(dirname "$0")/.."
flags=(--disable-experimental-prebuilts -c release --scratch-path .build-release)
swift build "${flags[@]}" --product cache-gateway
swift build "${flags[@]}" --product StampedeWorker
BENCH_BIN="$(swift build "${flags[@]}" --show-bin-path)"
export BENCH_BIN
scripts/with-redis.sh python3 scripts/bench-stampede.py
