#!/usr/bin/env bash
# Builds the libFuzzer target for the frame and message decoders (Fuzz/) with
# AddressSanitizer (LeakSanitizer included on Linux) and runs it for a bounded
# time; fails on a crash, a memory error, a leak, a hang or a broken property.
#   scripts/fuzz.sh [seconds] [runs]     default 60 s; runs, when given, stops sooner
# The build has a scratch folder of its own (.build-fuzz), so it never touches
# the debug or release builds. The corpus that libFuzzer grows is kept in
# .build-fuzz/corpus between runs; the seeds are written afresh each time by
# the fuzzer itself, from the real encoders. An input that fails is saved in
# .build-fuzz/artifacts/; put it in Fuzz/Regressions/ once fixed (every file
# there is run before fuzzing starts). After a source file is added to the root
# package, delete .build-fuzz/build.db once: SwiftPM keeps the path
# dependency's old file list in it ("cannot find ... in scope"); a fresh clone
# is not affected.
set -euo pipefail
cd "$(dirname "$0")/.."

seconds=${1:-60}
runs=${2:--1}
scratch=.build-fuzz
# Not `--sanitize=fuzzer --sanitize=address`: SwiftPM passes those to swiftc as
# two flags, swiftc keeps only the last one, and the Swift code then has
# libFuzzer's coverage but no AddressSanitizer checks (the runtime is linked,
# so leaks are still found, but not overflows: checked with a planted
# out-of-bounds read). `--sanitize=fuzzer` tells SwiftPM that libFuzzer brings
# `main`; the one combined flag after it is what swiftc uses, for compiling and linking.
flags=(--disable-experimental-prebuilts --package-path Fuzz --scratch-path "$scratch" -c release
       --sanitize=fuzzer -Xswiftc -sanitize=fuzzer,address -Xcc -fsanitize=address)

build_log="$(mktemp)"
trap 'rm -f "$build_log"' EXIT
set +e
swift build "${flags[@]}" --product ProtocolFuzzer 2>&1 | tee "$build_log"
status=${PIPESTATUS[0]}
set -e
[ "$status" -eq 0 ] || exit "$status"
# The fuzzer is our code too: no warnings.
if grep -E "^$(pwd)/Fuzz/.*: warning:" "$build_log" | sort -u | grep .; then
    echo "fuzz: the warnings above are in our code; fix them" >&2
    exit 1
fi
# Not `--show-bin-path`: with these flags it re-plans the build, and the next
# build then compiles everything again.
fuzzer="$scratch/release/ProtocolFuzzer"

seeds="$scratch/seeds"
corpus="$scratch/corpus"
artifacts="$scratch/artifacts"
rm -rf "$seeds"
mkdir -p "$corpus" "$artifacts"
CACHE_GATEWAY_FUZZ_WRITE_SEEDS="$seeds" "$fuzzer"

# Leaks are checked after every input that allocated more than it freed
# (libFuzzer's -detect_leaks) and at exit; a leak fails the run.
export ASAN_OPTIONS="detect_leaks=1:symbolize=1${ASAN_OPTIONS:+:$ASAN_OPTIONS}"

shopt -s nullglob
regressions=(Fuzz/Regressions/*)
if [ ${#regressions[@]} -gt 0 ]; then
    echo "fuzz: ${#regressions[@]} regression inputs"
    "$fuzzer" -timeout=10 "${regressions[@]}"
fi

echo "fuzz: ${seconds} s$( [ "$runs" -ge 0 ] && echo ", at most $runs inputs")"
# A log per run, so that runs side by side (a long one and make test's) keep theirs.
log="$scratch/logs/run-$(date +%Y%m%d-%H%M%S)-$$.log"
mkdir -p "$scratch/logs"
set +e
# The whole output goes to the log; the terminal gets it without the
# per-input progress lines and the recommended dictionary.
"$fuzzer" "$corpus" "$seeds" \
    -max_total_time="$seconds" -runs="$runs" \
    -timeout=10 -rss_limit_mb=2048 -max_len=4096 \
    -detect_leaks=1 -print_final_stats=1 \
    -artifact_prefix="$artifacts/" 2>&1 | tee "$log" \
    | grep -v -E '^#[0-9]+\s+(NEW|REDUCE|pulse|DONE)|^"|^###### |^stat::|^Done [0-9]+ runs'
status=${PIPESTATUS[0]}
set -e
if [ "$status" -ne 0 ]; then
    echo "fuzz: the fuzzer failed (exit $status); the input is in $artifacts/, the whole log in $log" >&2
    exit "$status"
fi
# The closing figures: inputs run, coverage (cov: edges, ft: features), speed.
grep -E '^#[0-9]+\s+DONE|^stat::' "$log"
