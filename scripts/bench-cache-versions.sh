#!/usr/bin/env bash
# The CacheVersions plugin's speed on a generated module of 200 files and
# 20,000 lines (200 @Cached functions, each reaching helpers across up to 200
# files), against that module's own debug build on the same CPU. The tool is
# timed as built in release and as built in debug (what `swift build` runs
# for a user's debug build), each on a first run (no summary cache), after a
# comment was added to one file, and with nothing changed.
#   scripts/bench-cache-versions.sh [runs]      (default 5 runs of the tool, 3 builds)
# Needs a debug build first (`swift build`, for the debug tool, the modules the generated
# module imports and for the compile flags SwiftPM recorded for a target with
# the plugin); builds CacheVersionsTool in release in .build-release (the
# first time: swift-syntax with optimisations, about 10 minutes on one CPU).
# Both sides are pinned to BENCH_CPU (default 1). Each figure is given as wall
# time and as CPU time (user + system, from /usr/bin/time): on a CPU that
# other work shares, the CPU time is the steadier of the two.
set -euo pipefail
cd "$(dirname "$0")/.."
runs="${1:-5}"
cpu="${BENCH_CPU:-1}"

flags=(--disable-experimental-prebuilts -c release --scratch-path .build-release)
swift build "${flags[@]}" --product CacheVersionsTool
tool="$(swift build "${flags[@]}" --show-bin-path)/CacheVersionsTool"
debug_bin="$(swift build --disable-experimental-prebuilts --show-bin-path)"
manifest="$(dirname "$(dirname "$debug_bin")")/debug.yaml"
[ -f "$manifest" ] || { echo "bench-cache-versions: no $manifest; run swift build first" >&2; exit 1; }

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/Sources" "$work/objects"

# The module: per file, one @Cached function and 9 helper blocks (a struct and
# a function calling the same helper of the previous file), 100 lines each.
python3 - "$work/Sources" <<'PY'
import sys, os
out = sys.argv[1]
for k in range(200):
    lines = ["import GatewayClient", ""]
    lines += [
        f"enum Cached{k} {{",
        "    @Cached(ttl: .seconds(60))",
        "    static func total(of value: Int) -> Int {",
        f"        step{k}x0(value) &+ step{k}x{k % 9}(value) &+ limit{k}",
        "    }",
        "}",
        f"let limit{k} = {k}",
        "",
    ]
    for j in range(9):
        previous = f"step{k - 1}x{j}(value / 2)" if k > 0 else str(j)
        lines += [
            f"struct Item{k}x{j}: Codable, Sendable {{",
            "    var id: Int",
            "    var label: String",
            "}",
            f"func step{k}x{j}(_ value: Int) -> Int {{",
            "    // Mixes in the same step of the previous file.",
            f"    let item = Item{k}x{j}(id: value, label: \"k{k}\")",
            f"    return item.id &* 31 &+ {previous}",
            "}",
            "",
        ]
    assert len(lines) == 100, len(lines)
    with open(os.path.join(out, f"File{k}.swift"), "w") as f:
        f.write("\n".join(lines) + "\n")
PY
echo "module: $(ls "$work/Sources" | wc -l) files, $(cat "$work/Sources"/*.swift | wc -l) lines"

# Median and spread of a list of seconds.
stats() { sort -n | awk '{a[NR]=$1} END {m=(NR%2)?a[(NR+1)/2]:(a[NR/2]+a[NR/2+1])/2; printf "%.3f %.3f %.3f\n", m, a[1], a[NR]}'; }
# Runs a command; prints its wall time and its CPU time (user + system), in seconds.
seconds() { /usr/bin/time -f "%e %U %S" -o "$work/time" "$@" >/dev/null; awk '{printf "%s %.3f\n", $1, $2 + $3}' "$work/time"; }

# Times `tool` in three situations, each `runs` times: a first run (no
# cache), a run after a comment was added to one file (one file parsed
# again), and a run with nothing changed. Prints a line per situation.
time_tool() {
    local label="$1" tool="$2" cold=() one=() none=()
    for i in $(seq "$runs"); do
        rm -f "$work/CacheVersions.swift" "$work/summaries.json"
        cold+=("$(seconds taskset -c "$cpu" "$tool" --output "$work/CacheVersions.swift" --cache "$work/summaries.json" "$work"/Sources/*.swift)")
        echo "// edit $i" >> "$work/Sources/File100.swift"
        one+=("$(seconds taskset -c "$cpu" "$tool" --output "$work/CacheVersions.swift" --cache "$work/summaries.json" "$work"/Sources/*.swift)")
        none+=("$(seconds taskset -c "$cpu" "$tool" --output "$work/CacheVersions.swift" --cache "$work/summaries.json" "$work"/Sources/*.swift)")
    done
    for situation in cold one none; do
        local -n times="$situation"
        read -r median low high < <(printf '%s\n' "${times[@]}" | cut -d' ' -f1 | stats)
        read -r cpu_median cpu_low cpu_high < <(printf '%s\n' "${times[@]}" | cut -d' ' -f2 | stats)
        case "$situation" in
            cold) what="first run, no cache  " ;;
            one) what="one file changed     " ;;
            none) what="nothing changed      " ;;
        esac
        echo "CacheVersionsTool ($label), $what: wall median ${median} s (${low}-${high}), CPU median ${cpu_median} s (${cpu_low}-${cpu_high}), ${runs} runs"
        eval "${label}_${situation}=${median}"
    done
}
time_tool release "$tool"
time_tool debug "$debug_bin/CacheVersionsTool"

# The module's debug build: the compile command SwiftPM recorded for
# VersionedWorker (a target with the plugin), on these sources and the table.
mapfile -t compile < <(python3 - "$manifest" "$work/objects/Generated.swiftmodule" <<'PY'
import sys, json
lines = open(sys.argv[1]).read().split("\n")
start = next(i for i, l in enumerate(lines) if l.startswith('  "C.VersionedWorker-') and l.endswith('-debug.module":'))
args = json.loads(next(l for l in lines[start:] if l.startswith("    args: "))[len("    args: "):])
drop = {"-emit-dependencies", "-incremental", "-serialize-diagnostics", "-parseable-output"}
drop_value = {"-output-file-map", "-index-store-path", "-module-name"}
out, i = [], 0
while i < len(args):
    a = args[i]
    if a == "-Xfrontend" and args[i + 1] == "-entry-point-function-name":
        i += 4; continue
    if a == "-emit-module-path":
        out += [a, sys.argv[2]]; i += 2; continue
    if a in drop or a.startswith("@"):
        i += 1; continue
    if a in drop_value:
        i += 2; continue
    out.append(a); i += 1
print("\n".join(out))
PY
)
build_times=()
builds=3
for _ in $(seq "$builds"); do
    rm -rf "$work/objects"/*
    build_times+=("$(cd "$work/objects" && seconds taskset -c "$cpu" "${compile[@]}" -module-name Generated -parse-as-library "$work"/Sources/*.swift "$work/CacheVersions.swift")")
done
read -r build_median build_min build_max < <(printf '%s\n' "${build_times[@]}" | cut -d' ' -f1 | stats)
read -r build_cpu build_cpu_min build_cpu_max < <(printf '%s\n' "${build_times[@]}" | cut -d' ' -f2 | stats)
echo "the module's debug build (swiftc, as SwiftPM compiles the target, without indexing): wall median ${build_median} s (${build_min}-${build_max}), CPU median ${build_cpu} s (${build_cpu_min}-${build_cpu_max}), ${builds} builds"
for pair in "release_cold:release tool, first run" "debug_cold:debug tool, first run" "debug_one:debug tool, one file changed"; do
    name="${pair%%:*}"
    echo "${pair#*:} / the module's debug build: $(echo "${!name} / $build_median * 100" | bc -l | xargs printf '%.1f')% (wall)"
done
