#!/usr/bin/env bash
# `make test`: builds everything with the tests, fails on any compiler warning in
# our own code, runs every test beside a private redis-server, then fuzzes the
# frame and message decoders for a bounded time (scripts/fuzz.sh). The Python
# client's tests (scripts/python-test.sh) run after the Swift tests, against
# the debug gateway just built, beside a redis-server of their own.
#   scripts/test.sh [swift test arguments]
# With arguments (a --filter, say) only the Swift tests run. CACHE_GATEWAY_FUZZ_SECONDS
# sets the fuzzing time (default 60; 0 skips it). The fuzz build has its own
# scratch folder (.build-fuzz): about 5 minutes on 2 CPUs the first time, seconds after.
set -euo pipefail
cd "$(dirname "$0")/.."

flags=(--disable-experimental-prebuilts)
log=$(mktemp)
trap 'rm -f "$log"' EXIT

set +e
swift build --build-tests "${flags[@]}" 2>&1 | tee "$log"
status=${PIPESTATUS[0]}
set -e
[ "$status" -eq 0 ] || exit "$status"

# Our code must build without warnings (dependencies' warnings are not ours).
root=$(pwd)
if grep -E "^$root/(Sources|Tests|Benchmarks|Examples|Plugins)/.*: warning:" "$log" | sort -u | grep .; then
    echo "test: the warnings above are in our code; fix them" >&2
    exit 1
fi

scripts/with-redis.sh swift test "${flags[@]}" --skip-build "$@"

if [ $# -eq 0 ]; then
    # The Python tests need no cluster.
    WITH_REDIS_CLUSTER=0 CACHE_GATEWAY_BINARY="$(pwd)/.build/debug/cache-gateway" scripts/with-redis.sh scripts/python-test.sh
fi

fuzz_seconds=${CACHE_GATEWAY_FUZZ_SECONDS:-60}
if [ $# -eq 0 ] && [ "$fuzz_seconds" -gt 0 ]; then
    scripts/fuzz.sh "$fuzz_seconds"
fi
