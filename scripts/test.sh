#!/usr/bin/env bash
# `make test`: builds everything with the tests, fails on any compiler warning in
# our own code, then runs every test beside a private redis-server.
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
if grep -E "^$root/(Sources|Tests|Benchmarks|Examples)/.*: warning:" "$log" | sort -u | grep .; then
    echo "test: the warnings above are in our code; fix them" >&2
    exit 1
fi

exec scripts/with-redis.sh swift test "${flags[@]}" --skip-build "$@"
